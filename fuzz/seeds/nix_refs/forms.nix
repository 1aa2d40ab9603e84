{ imports = [ ./a.nix ../b ]; x = "${./c}"; y = toString ./.; z = self.rev; w = import (./hosts + "/${n}.nix"); }
