//! A flake's targets as nix would list them: `outputs` called with every
//! input unknown, then the names under `nixosConfigurations`,
//! `darwinConfigurations`, `homeConfigurations`, colmena and deploy-rs.
//!
//! Frameworks that compute these outputs inside code guard cannot read (an
//! input's source) are modelled natively from their documented behaviour:
//! flake-parts' `mkFlake` (modules and their `flake.*` definitions),
//! nixos-unified's autowiring (`configurations/<kind>/<name>`), and clan
//! (`machines/<name>/`, the inventory, `machineClass`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::rc::Rc;

use super::builtins::lib_fn;
use super::{Attrs, Eval, EvalError, Prim, System, TargetKind, Thunk, Value, attrs, join, unknown};
use crate::git::Snapshot;

/// One target (host, darwin machine, home configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Target {
    /// Repository files and directories this target's builder names for it
    /// alone or with others (its `modules` list), in order.
    pub entry_points: Vec<String>,
}

/// The names of one output, and whether the list is complete.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Output {
    pub targets: BTreeMap<String, Target>,
    /// Why the list may lack names (an unknown part), if it may.
    pub incomplete: Option<String>,
    /// The output exists in the flake.
    pub present: bool,
}

/// Everything the flake builds, by kind.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct FlakeTargets {
    pub nixos: Output,
    pub darwin: Output,
    pub home: Output,
    /// colmena / deploy-rs node names.
    pub deploy_nodes: Output,
    /// Deploy tools the flake is set up for -> the names they deploy:
    /// `nixinate` (`apps.nixinate.<host>`), `colmena`, `deploy-rs`
    /// (`deploy.nodes`).
    pub deploy_tools: BTreeMap<String, Vec<String>>,
    /// Files the evaluation read to find these names.
    pub reads: Vec<String>,
}

/// Evaluates `flake_dir/flake.nix` far enough to name its targets; also
/// returns what the evaluation read (for [`super::fingerprint`]), failed or
/// not.
pub fn flake_targets(
    snapshot: &Snapshot,
    flake_dir: &str,
) -> (Result<FlakeTargets, EvalError>, Vec<String>) {
    let ev = Eval::new(snapshot);
    let result = evaluate(&ev, flake_dir);
    let reads = ev.reads.borrow().clone();
    (result, reads)
}

fn evaluate(ev: &Eval, flake_dir: &str) -> Result<FlakeTargets, EvalError> {
    let flake_nix = join(flake_dir, "flake.nix");
    let flake = ev.import(&flake_nix)?;
    let Some(flake) = ev.force_attrs(&flake)? else {
        return Err(EvalError::new(format!(
            "{flake_nix} is not an attribute set"
        )));
    };
    let input_names: Vec<Rc<str>> = match flake.map.get("inputs") {
        Some(t) => match ev.force(t)? {
            Value::Attrs(a) => a.map.keys().cloned().collect(),
            _ => Vec::new(),
        },
        None => Vec::new(),
    };
    let Some(outputs) = flake.map.get("outputs") else {
        return Err(EvalError::new(format!("{flake_nix} has no outputs")));
    };
    let outputs_fn = ev.force(outputs)?;

    // `self` is the outputs themselves plus the source tree; inputs are
    // unknown. Both refer to each other, so tie the knot through cells.
    let result_cell: Rc<std::cell::RefCell<Option<Thunk>>> = Rc::new(Default::default());
    let root: Rc<str> = Rc::from(flake_dir);
    let self_thunk = {
        let cell = result_cell.clone();
        let mut map = BTreeMap::new();
        map.insert(Rc::from("outPath"), Thunk::value(Value::Path(root.clone())));
        for stamp in [
            "rev",
            "shortRev",
            "dirtyRev",
            "lastModified",
            "narHash",
            "lastModifiedDate",
        ] {
            map.insert(
                Rc::from(stamp),
                Thunk::value(unknown(&format!("self.{stamp}"))),
            );
        }
        map.insert(
            Rc::from(super::LAZY_REST),
            Thunk::native(move |ev| {
                let result = cell
                    .borrow()
                    .clone()
                    .expect("outputs set before self is forced");
                ev.force(&result)
            }),
        );
        Thunk::value(Value::Attrs(Rc::new(Attrs {
            map,
            open: Some(Rc::from("self")),
            lib: false,
        })))
    };
    let mut inputs = BTreeMap::new();
    for name in &input_names {
        inputs.insert(
            name.clone(),
            Thunk::value(unknown(&format!("inputs.{name}"))),
        );
    }
    inputs.insert(Rc::from("self"), self_thunk);
    let inputs = Thunk::value(Value::Attrs(Rc::new(Attrs {
        map: inputs,
        open: Some(Rc::from("inputs")),
        lib: false,
    })));
    let result = {
        let f = outputs_fn.clone();
        let inputs = inputs.clone();
        Thunk::native(move |ev| ev.apply(f.clone(), inputs.clone()))
    };
    *result_cell.borrow_mut() = Some(result.clone());
    let out = ev.force(&result)?;
    let Some(out) = ev.force_attrs(&out)? else {
        return Err(EvalError::new(format!(
            "{flake_nix}: the outputs are not known statically"
        )));
    };

    let mut targets = FlakeTargets {
        nixos: output(ev, &out, &["nixosConfigurations"]),
        darwin: output(ev, &out, &["darwinConfigurations"]),
        home: output(ev, &out, &["homeConfigurations"]),
        deploy_nodes: Output::default(),
        deploy_tools: BTreeMap::new(),
        reads: Vec::new(),
    };
    let mut nodes = output(ev, &out, &["deploy", "nodes"]);
    let colmena = output(ev, &out, &["colmena"]);
    let nixinate = output(ev, &out, &["apps", "nixinate"]);
    for (tool, o) in [
        ("nixinate", &nixinate),
        ("colmena", &colmena),
        ("deploy-rs", &nodes),
    ] {
        if o.present {
            let names = o
                .targets
                .keys()
                .filter(|n| !matches!(n.as_str(), "meta" | "defaults"))
                .cloned()
                .collect();
            targets.deploy_tools.insert(tool.to_string(), names);
        }
    }
    for (name, t) in colmena.targets {
        if !matches!(name.as_str(), "meta" | "defaults") {
            nodes.targets.insert(name, t);
        }
    }
    nodes.present |= colmena.present;
    nodes.incomplete = nodes.incomplete.or(colmena.incomplete);
    targets.deploy_nodes = nodes;
    targets.reads = ev.reads.borrow().clone();
    Ok(targets)
}

/// The names under `out.<path>`, each with its entry points.
fn output(ev: &Eval, out: &Attrs, path: &[&str]) -> Output {
    let mut o = Output::default();
    let mut cur = Value::Attrs(Rc::new(Attrs {
        map: out.map.clone(),
        open: out.open.clone(),
        lib: false,
    }));
    for (i, name) in path.iter().enumerate() {
        let next = match &cur {
            Value::Attrs(a) => match a.map.get(*name) {
                Some(t) => ev.force(t),
                None => {
                    if i == 0 && a.open.is_some() {
                        // An open output set may still define it: only an
                        // explicit definition counts, so say nothing.
                    }
                    return o;
                }
            },
            _ => return o,
        };
        match next {
            Ok(v) => cur = v,
            Err(e) => {
                o.present = true;
                o.incomplete = Some(e.to_string());
                return o;
            }
        }
    }
    o.present = true;
    match unwrap_definitions(ev, &cur) {
        Ok(sets) => {
            for set in sets {
                match set {
                    Value::Attrs(a) => {
                        if let Some(why) = &a.open {
                            o.incomplete = Some(format!("depends on {why}"));
                        }
                        for (name, t) in &a.map {
                            let entry = o.targets.entry(name.to_string()).or_default();
                            if entry.entry_points.is_empty() {
                                entry.entry_points = entry_points(ev, t);
                            }
                        }
                    }
                    Value::Unknown(u) => o.incomplete = Some(format!("depends on {u}")),
                    _ => o.incomplete = Some("not an attribute set".into()),
                }
            }
        }
        Err(e) => o.incomplete = Some(e.to_string()),
    }
    o
}

/// A definition with `mkMerge`/`mkIf`/`mkDefault` wrappers taken apart:
/// the sets it may contribute (a false `mkIf` contributes nothing).
fn unwrap_definitions(ev: &Eval, v: &Value) -> Result<Vec<Value>, EvalError> {
    let Value::Attrs(a) = v else {
        return Ok(vec![v.clone()]);
    };
    let tag = match a.map.get("_type") {
        Some(t) => ev.force_str(&ev.force(t)?)?,
        None => None,
    };
    match tag.as_deref() {
        Some("merge") => {
            let contents = ev.force(&a.map["contents"])?;
            let mut out = Vec::new();
            match ev.force_list(&contents)? {
                Some(items) => {
                    for t in items.iter() {
                        out.extend(unwrap_definitions(ev, &ev.force(t)?)?);
                    }
                }
                None => out.push(unknown("mkMerge of an unknown list")),
            }
            Ok(out)
        }
        Some("if") => match ev.force(&a.map["condition"])? {
            Value::Bool(false) => Ok(Vec::new()),
            // An unknown condition may hold: keep the names (sound).
            _ => unwrap_definitions(ev, &ev.force(&a.map["content"])?),
        },
        Some("override") => unwrap_definitions(ev, &ev.force(&a.map["content"])?),
        _ => Ok(vec![v.clone()]),
    }
}

/// The repository paths a target's builder names: the `modules` list of a
/// system builder (flattened, with `imports` of inline modules), or the
/// path a framework autowired.
fn entry_points(ev: &Eval, t: &Thunk) -> Vec<String> {
    let Ok(v) = ev.force(t) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    match &v {
        Value::System(s) => {
            if let Ok(Value::Attrs(args)) = ev.force(&s.args) {
                if let Some(m) = args.map.get("modules") {
                    collect_module_paths(ev, m, &mut out, 0);
                }
                // nixos-unified's and the frameworks' single module.
                if let Some(m) = args.map.get("module") {
                    collect_module_paths(ev, m, &mut out, 0);
                }
            }
        }
        other => {
            if let Ok(Some(p)) = ev.as_repo_path(other) {
                out.push(p);
            }
        }
    }
    let mut seen = HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}

fn collect_module_paths(ev: &Eval, t: &Thunk, out: &mut Vec<String>, depth: usize) {
    // Plain paths are capped (a directory listing of shared modules can be
    // long); the file an imported module came from is always kept: it is
    // what names a host's own module after its shared ones.
    const MAX_PATHS: usize = 64;
    if depth > 4 {
        return;
    }
    let Ok(v) = ev.force(t) else {
        return;
    };
    if let Some(file) = ev.origin(&v) {
        out.push(file);
    }
    if out.len() > MAX_PATHS && !matches!(v, Value::List(_)) {
        return;
    }
    match &v {
        Value::List(items) => {
            for i in items.iter() {
                collect_module_paths(ev, i, out, depth + 1);
            }
        }
        Value::Attrs(a) => {
            if let Some(i) = a.map.get("imports") {
                collect_module_paths(ev, i, out, depth + 1);
            }
            if let Some(o) = a.map.get("outPath")
                && let Ok(ov) = ev.force(o)
                && let Ok(Some(p)) = ev.as_repo_path(&ov)
            {
                out.push(p);
            }
        }
        other => {
            if let Ok(Some(p)) = ev.as_repo_path(other) {
                out.push(p);
            }
        }
    }
}

/// Selecting `name` from an unknown value (an input and what lies under it).
pub(super) fn select_unknown(path: &str, name: &str) -> Value {
    if name == "lib" {
        return Value::Attrs(Rc::new(Attrs {
            map: BTreeMap::new(),
            open: Some(Rc::from(format!("{path}.lib"))),
            lib: true,
        }));
    }
    unknown(&format!("{path}.{name}"))
}

/// A framework function found under an input's `lib`, by the input's name.
pub(super) fn framework_fn(lib_path: &str, name: &str) -> Option<Value> {
    let input = lib_path
        .strip_prefix("inputs.")
        .and_then(|r| r.split('.').next())
        .unwrap_or("");
    let prim = |name: &'static str, arity: usize, f: super::PrimFn| {
        Value::Prim(Rc::new(Prim {
            name,
            arity,
            args: Vec::new(),
            f,
        }))
    };
    Some(match name {
        "mkFlake" if input.contains("parts") || input.contains("unified") => {
            prim("flake-parts.mkFlake", 2, flake_parts_mk_flake)
        }
        "evalFlakeModule" if input.contains("parts") => {
            prim("flake-parts.evalFlakeModule", 2, |ev, a| {
                let flake = flake_parts_mk_flake(ev, a)?;
                let mut config = BTreeMap::new();
                config.insert(Rc::from("flake"), Thunk::value(flake));
                let config = Value::Attrs(Rc::new(Attrs {
                    map: config,
                    open: Some(Rc::from("flake-parts config")),
                    lib: false,
                }));
                let mut m = BTreeMap::new();
                m.insert(Rc::from("config"), Thunk::value(config));
                Ok(Value::Attrs(Rc::new(Attrs {
                    map: m,
                    open: Some(Rc::from("flake-parts evaluation")),
                    lib: false,
                })))
            })
        }
        "clan" | "buildClan" if input.contains("clan") => prim("clan", 1, clan_lib),
        "mkLinuxSystem" if input.contains("unified") => prim("mkLinuxSystem", 2, |_, a| {
            Ok(system(TargetKind::Nixos, a[1].clone()))
        }),
        "mkMacosSystem" if input.contains("unified") => prim("mkMacosSystem", 2, |_, a| {
            Ok(system(TargetKind::Darwin, a[1].clone()))
        }),
        "load" if input.contains("haumea") => prim("haumea.load", 1, haumea_load),
        _ => return lib_fn(name),
    })
}

/// A system whose only module is `module` (frameworks' single-module
/// builders).
fn system(kind: TargetKind, module: Thunk) -> Value {
    let mut m = BTreeMap::new();
    m.insert(
        Rc::from("modules"),
        Thunk::value(Value::List(Rc::new(vec![module]))),
    );
    Value::System(Rc::new(System {
        kind,
        args: Thunk::value(attrs(m)),
    }))
}

/// What flake-parts modules define, not yet forced: a module's output
/// definitions may read `self`, which is what is being built.
#[derive(Default)]
struct ModuleDefs {
    /// `flake.<output>` definitions, per output name.
    flake: BTreeMap<String, Vec<Thunk>>,
    clan: Vec<Thunk>,
    autowire: bool,
    clan_module: bool,
    seen_files: BTreeSet<String>,
}

/// flake-parts' `mkFlake args module`: evaluates the module tree and
/// returns the `flake` outputs the modules define (other outputs unknown).
fn flake_parts_mk_flake(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let args = ev.force(&a[0])?;
    let inputs = match ev.force_attrs(&args)? {
        Some(s) => s
            .map
            .get("inputs")
            .cloned()
            .unwrap_or_else(|| Thunk::value(unknown("inputs"))),
        None => Thunk::value(unknown("inputs")),
    };
    let self_ = {
        let inputs = inputs.clone();
        Thunk::native(move |ev| {
            let i = ev.force(&inputs)?;
            Ok(ev.select(&i, "self")?.unwrap_or_else(|| unknown("self")))
        })
    };
    let mut margs = BTreeMap::new();
    margs.insert(Rc::from("inputs"), inputs.clone());
    margs.insert(Rc::from("self"), self_.clone());
    let lib = Thunk::value(Value::Attrs(Rc::new(Attrs {
        map: BTreeMap::new(),
        open: Some(Rc::from("inputs.nixpkgs.lib")),
        lib: true,
    })));
    margs.insert(Rc::from("lib"), lib.clone());
    margs.insert(Rc::from("flake-parts-lib"), lib);
    let module_args = Value::Attrs(Rc::new(Attrs {
        map: margs,
        open: Some(Rc::from("a flake-parts module argument")),
        lib: false,
    }));
    let mut defs = ModuleDefs::default();
    collect_module(ev, &a[1], &module_args, &mut defs, 0)?;

    let root = match ev.force(&self_).and_then(|s| ev.as_repo_path(&s)) {
        Ok(Some(r)) => r,
        _ => String::new(),
    };
    let mut names: BTreeSet<String> = defs.flake.keys().cloned().collect();
    if defs.autowire {
        names.extend(
            [
                "nixosConfigurations",
                "darwinConfigurations",
                "homeConfigurations",
            ]
            .map(String::from),
        );
    }
    let clan = defs.clan_module || !defs.clan.is_empty();
    if clan {
        names.extend(["nixosConfigurations", "darwinConfigurations"].map(String::from));
    }
    let mut outputs: BTreeMap<Rc<str>, Thunk> = BTreeMap::new();
    for name in names {
        let defined = defs.flake.get(&name).cloned().unwrap_or_default();
        let kind = match name.as_str() {
            "nixosConfigurations" => Some(TargetKind::Nixos),
            "darwinConfigurations" => Some(TargetKind::Darwin),
            "homeConfigurations" => Some(TargetKind::Home),
            _ => None,
        };
        let (autowire, clan_defs, root) = (defs.autowire, defs.clan.clone(), root.clone());
        let thunk = Thunk::native(move |ev| {
            let mut sets = Vec::new();
            for t in &defined {
                sets.push(ev.force(t)?);
            }
            if let Some(kind) = kind {
                if autowire {
                    let sub = match kind {
                        TargetKind::Nixos => "nixos",
                        TargetKind::Darwin => "darwin",
                        TargetKind::Home => "home",
                    };
                    sets.push(autowired(
                        ev,
                        &join(&root, &format!("configurations/{sub}")),
                        kind,
                    ));
                }
                if clan && kind != TargetKind::Home {
                    let mut configs = Vec::new();
                    for c in &clan_defs {
                        configs.push(ev.force(c)?);
                    }
                    sets.push(clan_machines(ev, &configs, &root, kind)?);
                }
            }
            merge_sets(ev, sets)
        });
        outputs.insert(Rc::from(name.as_str()), thunk);
    }
    Ok(Value::Attrs(Rc::new(Attrs {
        map: outputs,
        open: Some(Rc::from("flake-parts outputs")),
        lib: false,
    })))
}

/// Merges definitions of one output: every name any of them defines.
fn merge_sets(ev: &Eval, sets: Vec<Value>) -> Result<Value, EvalError> {
    let mut map = BTreeMap::new();
    let mut open = None;
    for s in sets {
        for d in unwrap_definitions(ev, &s)? {
            match d {
                Value::Attrs(a) => {
                    for (k, t) in &a.map {
                        map.entry(k.clone()).or_insert_with(|| t.clone());
                    }
                    if a.open.is_some() {
                        open = a.open.clone();
                    }
                }
                Value::Unknown(u) => open = Some(u),
                other => return Ok(other),
            }
        }
    }
    Ok(Value::Attrs(Rc::new(Attrs {
        map,
        open,
        lib: false,
    })))
}

fn collect_module(
    ev: &Eval,
    m: &Thunk,
    args: &Value,
    defs: &mut ModuleDefs,
    depth: usize,
) -> Result<(), EvalError> {
    if depth > 32 {
        return Err(EvalError::new("flake-parts modules nest too deeply"));
    }
    let v = ev.force(m)?;
    let v = match &v {
        Value::Unknown(u) => {
            // A flake module from an input: the ones that define targets
            // are modelled; others define none of the outputs guard reads.
            if u.contains("nixos-unified") && u.ends_with("autoWire") {
                defs.autowire = true;
            }
            if u.contains("clan") && u.contains("flakeModule") {
                defs.clan_module = true;
            }
            return Ok(());
        }
        other => {
            if let Some(p) = ev.as_repo_path(other)? {
                if !defs.seen_files.insert(p.clone()) {
                    return Ok(());
                }
                ev.import(&p)?
            } else {
                v.clone()
            }
        }
    };
    let v = match v {
        Value::Lambda(_) | Value::Prim(_) => ev.apply(v, Thunk::value(args.clone()))?,
        v => v,
    };
    let Value::Attrs(a) = v else {
        return Ok(());
    };
    if let Some(i) = a.map.get("imports") {
        let list = ev.force(i)?;
        if let Some(items) = ev.force_list(&list)? {
            for item in items.iter() {
                collect_module(ev, item, args, defs, depth + 1)?;
            }
        }
    }
    let mut scopes = vec![a.clone()];
    if let Some(c) = a.map.get("config")
        && let Value::Attrs(c) = ev.force(c)?
    {
        scopes.push(c);
    }
    for scope in &scopes {
        if let Some(f) = scope.map.get("flake") {
            let mut fv = ev.force(f)?;
            // `flake = { config, lib, ... }: { ... }` is a module too.
            if matches!(fv, Value::Lambda(_) | Value::Prim(_)) {
                fv = ev.apply(fv, Thunk::value(args.clone()))?;
            }
            for fdef in unwrap_definitions(ev, &fv)? {
                if let Value::Attrs(fa) = fdef {
                    for (name, t) in &fa.map {
                        if &**name == "clan" {
                            defs.clan.push(t.clone());
                        } else {
                            defs.flake
                                .entry(name.to_string())
                                .or_default()
                                .push(t.clone());
                        }
                    }
                }
            }
        }
        if let Some(c) = scope.map.get("clan") {
            defs.clan.push(c.clone());
        }
    }
    Ok(())
}

/// nixos-unified autowiring: `<dir>/<name>.nix` and `<dir>/<name>/default.nix`.
fn autowired(ev: &Eval, dir: &str, kind: TargetKind) -> Value {
    let tree = ev;
    if !tree.is_dir(dir) {
        return attrs(BTreeMap::new());
    }
    let mut map = BTreeMap::new();
    for (name, is_dir) in tree.children(dir) {
        let path = join(dir, &name);
        let (host, module) = if is_dir {
            if !tree.is_file(&join(&path, "default.nix")) {
                continue;
            }
            (name.clone(), path)
        } else if let Some(stem) = name.strip_suffix(".nix") {
            (stem.to_string(), path)
        } else {
            continue;
        };
        map.insert(
            Rc::from(host.as_str()),
            Thunk::value(system(
                kind,
                Thunk::value(Value::Path(Rc::from(module.as_str()))),
            )),
        );
    }
    attrs(map)
}

/// clan's machines of one class: every directory under
/// `<directory>/machines`, `inventory.machines`, `machines`, and the
/// machines of `inventory.json`; `machineClass` (default "nixos") decides
/// the output.
fn clan_machines(
    ev: &Eval,
    configs: &[Value],
    root: &str,
    kind: TargetKind,
) -> Result<Value, EvalError> {
    let mut directory = root.to_string();
    let mut classes: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut open = None;
    let note =
        |name: &str, class: Option<String>, classes: &mut BTreeMap<String, Option<String>>| {
            let e = classes.entry(name.to_string()).or_insert(None);
            if class.is_some() {
                *e = class;
            }
        };
    for c in configs {
        for c in unwrap_definitions(ev, c)? {
            let Value::Attrs(c) = c else {
                open = Some(Rc::from("clan configuration"));
                continue;
            };
            if let Some(d) = c.map.get("directory")
                && let Some(p) = ev.as_repo_path(&ev.force(d)?)?
            {
                directory = p;
            }
            if let Some(m) = c.map.get("machines")
                && let Value::Attrs(m) = ev.force(m)?
            {
                for name in m.map.keys() {
                    note(name, None, &mut classes);
                }
            }
            if let Some(inv) = c.map.get("inventory") {
                let inv = ev.force(inv)?;
                if let Some(m) = ev.select(&inv, "machines").ok().flatten() {
                    for d in unwrap_definitions(ev, &m)? {
                        match d {
                            Value::Attrs(m) => {
                                for (name, t) in &m.map {
                                    note(name, machine_class(ev, t), &mut classes);
                                }
                            }
                            Value::Unknown(u) => open = Some(u),
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    let tree = ev;
    let machines_dir = join(&directory, "machines");
    if tree.is_dir(&machines_dir) {
        for (name, is_dir) in tree.children(&machines_dir) {
            if is_dir {
                note(&name, None, &mut classes);
            }
        }
    }
    let inv_json = join(&directory, "inventory.json");
    if tree.is_file(&inv_json)
        && let Ok(text) = ev.read_text(&inv_json)
        && let Ok(j) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(m) = j.get("machines").and_then(|m| m.as_object())
    {
        for (name, spec) in m {
            let class = spec
                .get("machineClass")
                .and_then(|c| c.as_str())
                .map(str::to_string);
            note(name, class, &mut classes);
        }
    }
    let want = if kind == TargetKind::Nixos {
        "nixos"
    } else {
        "darwin"
    };
    let mut map = BTreeMap::new();
    for (name, class) in classes {
        if class.as_deref().unwrap_or("nixos") != want {
            continue;
        }
        let dir = join(&machines_dir, &name);
        let config = join(&dir, "configuration.nix");
        let entry = if tree.is_file(&config) { config } else { dir };
        map.insert(
            Rc::from(name.as_str()),
            Thunk::value(system(
                kind,
                Thunk::value(Value::Path(Rc::from(entry.as_str()))),
            )),
        );
    }
    Ok(Value::Attrs(Rc::new(Attrs {
        map,
        open,
        lib: false,
    })))
}

fn machine_class(ev: &Eval, t: &Thunk) -> Option<String> {
    let m = ev.force(t).ok()?;
    let c = ev.select(&m, "machineClass").ok().flatten()?;
    ev.force_str(&c).ok().flatten()
}

/// clan-core's `lib.clan { self, directory?, machines?, inventory? }`.
fn clan_lib(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let cfg = ev.force(&a[0])?;
    let root = match ev.select(&cfg, "self").ok().flatten() {
        Some(s) => ev.as_repo_path(&s)?.unwrap_or_default(),
        None => String::new(),
    };
    let nixos = clan_machines(ev, std::slice::from_ref(&cfg), &root, TargetKind::Nixos)?;
    let darwin = clan_machines(ev, std::slice::from_ref(&cfg), &root, TargetKind::Darwin)?;
    let mut out = BTreeMap::new();
    out.insert(Rc::from("nixosConfigurations"), Thunk::value(nixos));
    out.insert(Rc::from("darwinConfigurations"), Thunk::value(darwin));
    let out = Value::Attrs(Rc::new(Attrs {
        map: out,
        open: Some(Rc::from("clan outputs")),
        lib: false,
    }));
    let mut with_config = match &out {
        Value::Attrs(a) => a.map.clone(),
        _ => unreachable!(),
    };
    with_config.insert(Rc::from("config"), Thunk::value(out.clone()));
    Ok(Value::Attrs(Rc::new(Attrs {
        map: with_config,
        open: Some(Rc::from("clan outputs")),
        lib: false,
    })))
}

/// haumea's `load { src, loader?, inputs? }`: a set mirroring the directory
/// (`x.nix` and `x/default.nix` become `x`), each file imported and, when a
/// function, called with `inputs`.
fn haumea_load(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let cfg = ev.force(&a[0])?;
    let Some(src) = ev.select(&cfg, "src")? else {
        return Err(EvalError::new("haumea.load: no src"));
    };
    let Some(dir) = ev.as_repo_path(&src)? else {
        return Ok(unknown("haumea.load of a directory outside the repository"));
    };
    // haumea passes what a file's function asks for; anything beyond the
    // given inputs is unknown, not an error.
    let inputs = match ev.select(&cfg, "inputs")? {
        Some(Value::Attrs(i)) => Value::Attrs(Rc::new(Attrs {
            map: i.map.clone(),
            open: Some(Rc::from("haumea inputs")),
            lib: false,
        })),
        _ => unknown("haumea inputs"),
    };
    Ok(haumea_dir(ev, &dir, &inputs))
}

fn haumea_dir(ev: &Eval, dir: &str, inputs: &Value) -> Value {
    let tree = ev;
    let mut map = BTreeMap::new();
    for (name, is_dir) in tree.children(dir) {
        let path = join(dir, &name);
        let key = if is_dir {
            name.clone()
        } else if let Some(stem) = name.strip_suffix(".nix") {
            stem.to_string()
        } else {
            continue;
        };
        // haumea hides `_x` files from the result.
        if key.starts_with('_') {
            continue;
        }
        let inputs = inputs.clone();
        let thunk = if is_dir && !tree.is_file(&join(&path, "default.nix")) {
            let path = path.clone();
            Thunk::native(move |ev| Ok(haumea_dir(ev, &path, &inputs)))
        } else {
            let path = path.clone();
            Thunk::native(move |ev| {
                let v = ev.import(&path)?;
                match v {
                    Value::Lambda(_) | Value::Prim(_) => ev.apply(v, Thunk::value(inputs.clone())),
                    v => Ok(v),
                }
            })
        };
        map.insert(Rc::from(key.as_str()), thunk);
    }
    attrs(map)
}
