services.x.password = "hunter2hunter2";
privateKey = "kP3xq1S9mWcT0b7Jf2hL8ZyNvE4uDsGrAoIe6Ck5pH0=";
