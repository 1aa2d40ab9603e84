//! `builtins` and the part of nixpkgs' `lib` that flakes use to build host
//! lists. Each is written from its documented behaviour; where the real one
//! would need the store, the network or the system, the result is
//! [`Value::Unknown`].

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use super::{
    Attrs, Env, Eval, EvalError, Prim, PrimFn, System, TargetKind, Thunk, Value, attrs, err,
    type_name, unknown,
};

fn prim(name: &'static str, arity: usize, f: PrimFn) -> Value {
    Value::Prim(Rc::new(Prim {
        name,
        arity,
        args: Vec::new(),
        f,
    }))
}

fn v(t: Value) -> Thunk {
    Thunk::value(t)
}

fn s(x: &str) -> Value {
    Value::Str(Rc::from(x))
}

/// The global scope: `builtins` and the names nix puts at the top level.
pub(super) fn root_env() -> Rc<Env> {
    let mut b = BTreeMap::new();
    for name in TOP_LEVEL.iter().chain(BUILTINS) {
        if let Some(f) = builtin(name) {
            b.insert(Rc::from(*name), v(f));
        }
    }
    b.insert(
        Rc::from("currentSystem"),
        v(unknown("builtins.currentSystem")),
    );
    b.insert(Rc::from("nixVersion"), v(s("2.18.0")));
    b.insert(Rc::from("langVersion"), v(Value::Int(6)));
    b.insert(Rc::from("storeDir"), v(s("/nix/store")));
    b.insert(Rc::from("true"), v(Value::Bool(true)));
    b.insert(Rc::from("false"), v(Value::Bool(false)));
    b.insert(Rc::from("null"), v(Value::Null));
    let builtins = Value::Attrs(Rc::new(Attrs {
        map: b.clone(),
        open: Some(Rc::from("builtins")),
        lib: false,
    }));
    let mut vars: HashMap<Rc<str>, Thunk> = HashMap::new();
    for top in TOP_LEVEL.iter().chain(&["true", "false", "null"]) {
        if let Some(t) = b.get(*top) {
            vars.insert(Rc::from(*top), t.clone());
        }
    }
    vars.insert(Rc::from("builtins"), v(builtins));
    Rc::new(Env {
        vars,
        with: None,
        parent: None,
        dir: Rc::from(""),
        file: Rc::from("(builtins)"),
    })
}

/// Builtins nix also binds at the top level.
const TOP_LEVEL: &[&str] = &[
    "import",
    "map",
    "toString",
    "baseNameOf",
    "dirOf",
    "throw",
    "abort",
    "removeAttrs",
    "isNull",
    "derivation",
    "fetchTarball",
    "fetchGit",
    "fetchurl",
    "placeholder",
    "scopedImport",
];

/// The other builtins guard implements.
const BUILTINS: &[&str] = &[
    "readDir",
    "readFile",
    "pathExists",
    "attrNames",
    "attrValues",
    "mapAttrs",
    "filter",
    "listToAttrs",
    "hasAttr",
    "getAttr",
    "elem",
    "length",
    "head",
    "tail",
    "elemAt",
    "concatLists",
    "concatMap",
    "foldl'",
    "isAttrs",
    "isList",
    "isString",
    "isFunction",
    "isPath",
    "isBool",
    "isInt",
    "typeOf",
    "match",
    "replaceStrings",
    "substring",
    "stringLength",
    "intersectAttrs",
    "functionArgs",
    "seq",
    "deepSeq",
    "trace",
    "tryEval",
    "genList",
    "any",
    "all",
    "catAttrs",
    "getEnv",
    "fromJSON",
    "fromTOML",
    "toJSON",
    "split",
    "concatStringsSep",
    "sort",
    "add",
    "sub",
    "lessThan",
    "path",
    "getFlake",
    "zipAttrsWith",
    "groupBy",
    "partition",
    "unsafeDiscardStringContext",
    "hashString",
    "toPath",
    "filterSource",
];

fn builtin(name: &str) -> Option<Value> {
    Some(match name {
        "import" | "scopedImport" => prim("import", 1, b_import),
        "map" => prim("map", 2, b_map),
        "toString" => prim("toString", 1, b_to_string),
        "baseNameOf" => prim("baseNameOf", 1, b_base_name),
        "dirOf" => prim("dirOf", 1, b_dir_of),
        "throw" | "abort" => prim("throw", 1, b_throw),
        "removeAttrs" => prim("removeAttrs", 2, b_remove_attrs),
        "isNull" => prim("isNull", 1, |ev, a| {
            Ok(Value::Bool(matches!(ev.force(&a[0])?, Value::Null)))
        }),
        "derivation" | "fetchTarball" | "fetchGit" | "fetchurl" | "placeholder" | "getFlake"
        | "hashString" | "filterSource" => prim("opaque", 1, |_, _| Ok(unknown("a store object"))),
        "path" => prim("path", 1, b_path),
        "readDir" => prim("readDir", 1, b_read_dir),
        "readFile" => prim("readFile", 1, b_read_file),
        "pathExists" => prim("pathExists", 1, b_path_exists),
        "attrNames" => prim("attrNames", 1, b_attr_names),
        "attrValues" => prim("attrValues", 1, b_attr_values),
        "mapAttrs" => prim("mapAttrs", 2, b_map_attrs),
        "filter" => prim("filter", 2, b_filter),
        "listToAttrs" => prim("listToAttrs", 1, b_list_to_attrs),
        "hasAttr" => prim("hasAttr", 2, b_has_attr),
        "getAttr" => prim("getAttr", 2, b_get_attr),
        "elem" => prim("elem", 2, b_elem),
        "length" => prim("length", 1, |ev, a| {
            Ok(list(ev, &a[0])?.map_or(unknown("length"), |l| Value::Int(l.len() as i64)))
        }),
        "head" => prim("head", 1, b_head),
        "tail" => prim("tail", 1, b_tail),
        "elemAt" => prim("elemAt", 2, b_elem_at),
        "concatLists" => prim("concatLists", 1, b_concat_lists),
        "concatMap" => prim("concatMap", 2, b_concat_map),
        "foldl'" => prim("foldl'", 3, b_foldl),
        "isAttrs" => prim("isAttrs", 1, |ev, a| {
            is(ev, a, |v| matches!(v, Value::Attrs(_)))
        }),
        "isList" => prim("isList", 1, |ev, a| {
            is(ev, a, |v| matches!(v, Value::List(_)))
        }),
        "isString" => prim("isString", 1, |ev, a| {
            is(ev, a, |v| matches!(v, Value::Str(_)))
        }),
        "isPath" => prim("isPath", 1, |ev, a| {
            is(ev, a, |v| matches!(v, Value::Path(_)))
        }),
        "isBool" => prim("isBool", 1, |ev, a| {
            is(ev, a, |v| matches!(v, Value::Bool(_)))
        }),
        "isInt" => prim("isInt", 1, |ev, a| {
            is(ev, a, |v| matches!(v, Value::Int(_)))
        }),
        "isFunction" => prim("isFunction", 1, |ev, a| {
            is(ev, a, |v| matches!(v, Value::Lambda(_) | Value::Prim(_)))
        }),
        "typeOf" => prim("typeOf", 1, b_type_of),
        "match" => prim("match", 2, b_match),
        "split" => prim("split", 2, |_, _| Ok(unknown("builtins.split"))),
        "replaceStrings" => prim("replaceStrings", 3, b_replace_strings),
        "substring" => prim("substring", 3, b_substring),
        "stringLength" => prim("stringLength", 1, |ev, a| {
            Ok(string(ev, &a[0])?.map_or(unknown("stringLength"), |s| Value::Int(s.len() as i64)))
        }),
        "intersectAttrs" => prim("intersectAttrs", 2, b_intersect_attrs),
        "functionArgs" => prim("functionArgs", 1, |_, _| Ok(attrs(BTreeMap::new()))),
        "seq" | "deepSeq" => prim("seq", 2, |ev, a| {
            ev.force(&a[0])?;
            ev.force(&a[1])
        }),
        "trace" => prim("trace", 2, |ev, a| ev.force(&a[1])),
        "tryEval" => prim("tryEval", 1, b_try_eval),
        "genList" => prim("genList", 2, b_gen_list),
        "any" => prim("any", 2, |ev, a| any_all(ev, a, true)),
        "all" => prim("all", 2, |ev, a| any_all(ev, a, false)),
        "catAttrs" => prim("catAttrs", 2, b_cat_attrs),
        "getEnv" => prim("getEnv", 1, |_, _| Ok(s(""))),
        "fromJSON" => prim("fromJSON", 1, b_from_json),
        "fromTOML" => prim("fromTOML", 1, b_from_toml),
        "toJSON" => prim("toJSON", 1, |_, _| Ok(unknown("builtins.toJSON"))),
        "concatStringsSep" => prim("concatStringsSep", 2, b_concat_strings_sep),
        "sort" => prim("sort", 2, b_sort),
        "add" => prim("add", 2, |ev, a| arith(ev, a, |x, y| x + y)),
        "sub" => prim("sub", 2, |ev, a| arith(ev, a, |x, y| x - y)),
        "lessThan" => prim("lessThan", 2, |ev, a| {
            match (ev.force(&a[0])?, ev.force(&a[1])?) {
                (Value::Int(x), Value::Int(y)) => Ok(Value::Bool(x < y)),
                (Value::Str(x), Value::Str(y)) => Ok(Value::Bool(x < y)),
                _ => Ok(unknown("lessThan")),
            }
        }),
        "zipAttrsWith" => prim("zipAttrsWith", 2, b_zip_attrs_with),
        "groupBy" => prim("groupBy", 2, |_, _| Ok(unknown("groupBy"))),
        "partition" => prim("partition", 2, b_partition),
        "unsafeDiscardStringContext" | "toPath" => prim("id", 1, |ev, a| ev.force(&a[0])),
        _ => return None,
    })
}

/// guard's implementation of the nixpkgs `lib` function `name`, found
/// under any of `lib`'s namespaces (`lib.attrsets.genAttrs` or
/// `lib.genAttrs`). Builtins are re-exported by `lib` too.
pub(super) fn lib_fn(name: &str) -> Option<Value> {
    Some(match name {
        "attrsets" | "lists" | "strings" | "trivial" | "fixedPoints" | "modules" | "options"
        | "types" | "filesystem" | "debug" | "versions" | "sources" | "customisation" => {
            Value::Attrs(Rc::new(Attrs {
                map: BTreeMap::new(),
                open: Some(Rc::from("lib")),
                lib: true,
            }))
        }
        "genAttrs" => prim("genAttrs", 2, l_gen_attrs),
        "mapAttrs'" => prim("mapAttrs'", 2, l_map_attrs_prime),
        "mapAttrsToList" => prim("mapAttrsToList", 2, l_map_attrs_to_list),
        "filterAttrs" => prim("filterAttrs", 2, l_filter_attrs),
        "nameValuePair" => prim("nameValuePair", 2, |_, a| {
            let mut m = BTreeMap::new();
            m.insert(Rc::from("name"), a[0].clone());
            m.insert(Rc::from("value"), a[1].clone());
            Ok(attrs(m))
        }),
        "foldl" => prim("foldl", 3, b_foldl),
        "mergeAttrs" => prim("mergeAttrs", 2, |ev, a| {
            let (x, y) = (ev.force(&a[0])?, ev.force(&a[1])?);
            ev.binop(rnix::ast::BinOpKind::Update, x, y)
        }),
        "foldr" => prim("foldr", 3, l_foldr),
        "hasSuffix" => prim("hasSuffix", 2, |ev, a| str2(ev, a, |x, y| y.ends_with(x))),
        "hasPrefix" => prim("hasPrefix", 2, |ev, a| str2(ev, a, |x, y| y.starts_with(x))),
        "hasInfix" => prim("hasInfix", 2, |ev, a| str2(ev, a, |x, y| y.contains(x))),
        "removeSuffix" => prim("removeSuffix", 2, |ev, a| {
            str2v(ev, a, |x, y| y.strip_suffix(x).unwrap_or(y).to_string())
        }),
        "removePrefix" => prim("removePrefix", 2, |ev, a| {
            str2v(ev, a, |x, y| y.strip_prefix(x).unwrap_or(y).to_string())
        }),
        "optional" => prim("optional", 2, |ev, a| match ev.force(&a[0])? {
            Value::Bool(true) => Ok(Value::List(Rc::new(vec![a[1].clone()]))),
            Value::Bool(false) => Ok(Value::List(Rc::new(vec![]))),
            _ => Ok(unknown("optional")),
        }),
        "optionals" => prim("optionals", 2, |ev, a| match ev.force(&a[0])? {
            Value::Bool(true) => ev.force(&a[1]),
            Value::Bool(false) => Ok(Value::List(Rc::new(vec![]))),
            _ => Ok(unknown("optionals")),
        }),
        "optionalAttrs" => prim("optionalAttrs", 2, |ev, a| match ev.force(&a[0])? {
            Value::Bool(true) => ev.force(&a[1]),
            Value::Bool(false) => Ok(attrs(BTreeMap::new())),
            _ => Ok(unknown("optionalAttrs")),
        }),
        "optionalString" => prim("optionalString", 2, |ev, a| match ev.force(&a[0])? {
            Value::Bool(true) => ev.force(&a[1]),
            Value::Bool(false) => Ok(s("")),
            _ => Ok(unknown("optionalString")),
        }),
        "recursiveUpdate" => prim("recursiveUpdate", 2, l_recursive_update),
        "concatMapAttrs" => prim("concatMapAttrs", 2, l_concat_map_attrs),
        "mergeAttrsList" => prim("mergeAttrsList", 1, l_merge_attrs_list),
        "flatten" => prim("flatten", 1, l_flatten),
        "unique" | "naturalSort" => prim("id", 1, |ev, a| ev.force(&a[0])),
        "forEach" => prim("forEach", 2, |ev, a| {
            b_map(ev, &[a[1].clone(), a[0].clone()])
        }),
        "id" => prim("id", 1, |ev, a| ev.force(&a[0])),
        "const" => prim("const", 2, |ev, a| ev.force(&a[0])),
        "flip" => prim("flip", 3, |ev, a| {
            let f = ev.force(&a[0])?;
            ev.apply2(f, a[2].clone(), a[1].clone())
        }),
        "pipe" => prim("pipe", 2, l_pipe),
        "concatStrings" => prim("concatStrings", 1, |ev, a| {
            b_concat_strings_sep(ev, &[v(s("")), a[0].clone()])
        }),
        "concatMapStrings" => prim("concatMapStrings", 2, |ev, a| {
            let l = b_map(ev, a)?;
            b_concat_strings_sep(ev, &[v(s("")), v(l)])
        }),
        "splitString" => prim("splitString", 2, l_split_string),
        "toLower" => prim("toLower", 1, |ev, a| str1(ev, a, |x| x.to_lowercase())),
        "toUpper" => prim("toUpper", 1, |ev, a| str1(ev, a, |x| x.to_uppercase())),
        "last" => prim("last", 1, |ev, a| match list(ev, &a[0])? {
            Some(l) => match l.last() {
                Some(t) => ev.force(t),
                None => err("lib.last: empty list"),
            },
            None => Ok(unknown("last")),
        }),
        "init" => prim("init", 1, |ev, a| match list(ev, &a[0])? {
            Some(l) if !l.is_empty() => Ok(Value::List(Rc::new(l[..l.len() - 1].to_vec()))),
            _ => Ok(unknown("init")),
        }),
        "imap0" => prim("imap0", 2, |ev, a| l_imap(ev, a, 0)),
        "imap1" => prim("imap1", 2, |ev, a| l_imap(ev, a, 1)),
        "range" => prim("range", 2, |ev, a| {
            match (ev.force(&a[0])?, ev.force(&a[1])?) {
                (Value::Int(x), Value::Int(y)) if y - x < 100_000 => Ok(Value::List(Rc::new(
                    (x..=y).map(|i| v(Value::Int(i))).collect(),
                ))),
                _ => Ok(unknown("range")),
            }
        }),
        "mkIf" => prim("mkIf", 2, |_, a| {
            Ok(tagged(
                "if",
                &[("condition", a[0].clone()), ("content", a[1].clone())],
            ))
        }),
        "mkMerge" => prim("mkMerge", 1, |_, a| {
            Ok(tagged("merge", &[("contents", a[0].clone())]))
        }),
        "mkDefault" | "mkForce" | "mkOverride" | "mkBefore" | "mkAfter" | "mkOrder" => {
            let arity = if matches!(name, "mkOverride" | "mkOrder") {
                2
            } else {
                1
            };
            prim("mkOverride", arity, |_, a| {
                Ok(tagged("override", &[("content", a[a.len() - 1].clone())]))
            })
        }
        "mkOption" | "mkEnableOption" | "mkPackageOption" => {
            prim("mkOption", 1, |_, _| Ok(tagged("option", &[])))
        }
        "fix" => prim("fix", 1, l_fix),
        "extend" => prim("extend", 1, l_extend_lib),
        "makeExtensible" => prim("makeExtensible", 1, l_make_extensible),
        "nixosSystem" => prim("nixosSystem", 1, |_, a| system(TargetKind::Nixos, a)),
        "darwinSystem" => prim("darwinSystem", 1, |_, a| system(TargetKind::Darwin, a)),
        "homeManagerConfiguration" => prim("homeManagerConfiguration", 1, |_, a| {
            system(TargetKind::Home, a)
        }),
        "listFilesRecursive" => prim("listFilesRecursive", 1, l_list_files_recursive),
        "subtractLists" => prim("subtractLists", 2, |ev, a| {
            let (Some(minus), Some(from)) = (list(ev, &a[0])?, list(ev, &a[1])?) else {
                return Ok(unknown("subtractLists"));
            };
            let mut out = Vec::new();
            'outer: for t in from.iter() {
                let x = ev.force(t)?;
                for m in minus.iter() {
                    match ev.equal(&x, &ev.force(m)?)? {
                        Some(true) => continue 'outer,
                        None => return Ok(unknown("subtractLists")),
                        Some(false) => {}
                    }
                }
                out.push(t.clone());
            }
            Ok(Value::List(Rc::new(out)))
        }),
        "getName" | "getVersion" => prim("getName", 1, |_, _| Ok(unknown("lib.getName"))),
        _ => return builtin(name),
    })
}

fn system(kind: TargetKind, a: &[Thunk]) -> Result<Value, EvalError> {
    Ok(Value::System(Rc::new(System {
        kind,
        args: a[0].clone(),
    })))
}

/// `{ _type = tag; ... }` as nixpkgs' module helpers return.
fn tagged(tag: &str, fields: &[(&str, Thunk)]) -> Value {
    let mut m = BTreeMap::new();
    m.insert(Rc::from("_type"), v(s(tag)));
    for (k, t) in fields {
        m.insert(Rc::from(*k), t.clone());
    }
    attrs(m)
}

fn set(ev: &Eval, t: &Thunk) -> Result<Option<Rc<Attrs>>, EvalError> {
    let x = ev.force(t)?;
    ev.force_attrs(&x)
}

fn list(ev: &Eval, t: &Thunk) -> Result<Option<Rc<Vec<Thunk>>>, EvalError> {
    let x = ev.force(t)?;
    ev.force_list(&x)
}

fn string(ev: &Eval, t: &Thunk) -> Result<Option<String>, EvalError> {
    let x = ev.force(t)?;
    ev.force_str(&x)
}

fn is(ev: &Eval, a: &[Thunk], f: fn(&Value) -> bool) -> Result<Value, EvalError> {
    let x = ev.force(&a[0])?;
    Ok(match x {
        Value::Unknown(u) => Value::Unknown(u),
        x => Value::Bool(f(&x)),
    })
}

fn str1(ev: &Eval, a: &[Thunk], f: fn(&str) -> String) -> Result<Value, EvalError> {
    Ok(match string(ev, &a[0])? {
        Some(x) => s(&f(&x)),
        None => unknown("a string"),
    })
}

fn str2(ev: &Eval, a: &[Thunk], f: fn(&str, &str) -> bool) -> Result<Value, EvalError> {
    Ok(match (string(ev, &a[0])?, string(ev, &a[1])?) {
        (Some(x), Some(y)) => Value::Bool(f(&x, &y)),
        _ => unknown("a string test"),
    })
}

fn str2v(ev: &Eval, a: &[Thunk], f: fn(&str, &str) -> String) -> Result<Value, EvalError> {
    let keep_path = matches!(ev.force(&a[1])?, Value::Path(_));
    Ok(match (string(ev, &a[0])?, string(ev, &a[1])?) {
        (Some(x), Some(y)) if !keep_path => s(&f(&x, &y)),
        (Some(x), Some(y)) => s(&f(&x, &y)),
        _ => unknown("a string"),
    })
}

fn arith(ev: &Eval, a: &[Thunk], f: fn(i64, i64) -> i64) -> Result<Value, EvalError> {
    match (ev.force(&a[0])?, ev.force(&a[1])?) {
        (Value::Int(x), Value::Int(y)) => Ok(Value::Int(f(x, y))),
        _ => Ok(unknown("arithmetic")),
    }
}

fn b_import(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let x = ev.force(&a[0])?;
    match ev.as_repo_path(&x)? {
        Some(p) => ev.import(&p),
        None => Ok(match x {
            Value::Unknown(u) => Value::Unknown(Rc::from(format!("import {u}"))),
            _ => unknown("an import from outside the repository"),
        }),
    }
}

fn b_map(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let Some(l) = list(ev, &a[1])? else {
        return Ok(unknown("map"));
    };
    let f = a[0].clone();
    Ok(Value::List(Rc::new(
        l.iter()
            .map(|x| {
                let (f, x) = (f.clone(), x.clone());
                Thunk::native(move |ev| ev.apply(ev.force(&f)?, x.clone()))
            })
            .collect(),
    )))
}

fn b_to_string(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let x = ev.force(&a[0])?;
    Ok(match ev.coerce_str(&x)? {
        Some(st) => s(&st),
        None => unknown("toString"),
    })
}

fn b_base_name(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let x = ev.force(&a[0])?;
    let text = match &x {
        Value::Path(p) => p.to_string(),
        other => match ev.force_str(other)? {
            Some(t) => t,
            None => return Ok(unknown("baseNameOf")),
        },
    };
    let t = text.trim_end_matches('/');
    Ok(s(t.rsplit_once('/').map_or(t, |(_, b)| b)))
}

fn b_dir_of(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    match ev.force(&a[0])? {
        Value::Path(p) => Ok(Value::Path(Rc::from(
            p.rsplit_once('/').map_or("", |(d, _)| d),
        ))),
        other => Ok(match ev.force_str(&other)? {
            Some(t) => s(t.rsplit_once('/').map_or(".", |(d, _)| d)),
            None => unknown("dirOf"),
        }),
    }
}

fn b_throw(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let msg = string(ev, &a[0])?.unwrap_or_default();
    err(format!("the flake throws: {msg}"))
}

fn b_remove_attrs(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let (Some(set_), Some(names)) = (set(ev, &a[0])?, list(ev, &a[1])?) else {
        return Ok(unknown("removeAttrs"));
    };
    let mut map = set_.map.clone();
    for n in names.iter() {
        if let Some(n) = string(ev, n)? {
            map.remove(n.as_str());
        }
    }
    Ok(Value::Attrs(Rc::new(Attrs {
        map,
        open: set_.open.clone(),
        lib: set_.lib,
    })))
}

fn b_path(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let Some(args) = set(ev, &a[0])? else {
        return Ok(unknown("builtins.path"));
    };
    match args.map.get("path") {
        Some(t) => ev.force(t),
        None => err("builtins.path: no path"),
    }
}

fn repo_path(ev: &Eval, t: &Thunk) -> Result<Option<String>, EvalError> {
    let x = ev.force(t)?;
    ev.as_repo_path(&x)
}

fn b_read_dir(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    match repo_path(ev, &a[0])? {
        Some(p) => ev.read_dir(&p),
        None => Ok(unknown("readDir outside the repository")),
    }
}

fn b_read_file(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    match repo_path(ev, &a[0])? {
        Some(p) => Ok(s(&ev.read_text(&p)?)),
        None => Ok(unknown("readFile outside the repository")),
    }
}

fn b_path_exists(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    match repo_path(ev, &a[0])? {
        Some(p) => Ok(Value::Bool(ev.kind(&p).is_some())),
        None => Ok(unknown("pathExists outside the repository")),
    }
}

fn b_attr_names(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    match set(ev, &a[0])? {
        Some(x) if x.open.is_none() => Ok(Value::List(Rc::new(
            x.map.keys().map(|k| v(Value::Str(k.clone()))).collect(),
        ))),
        _ => Ok(unknown("attrNames of an incompletely known set")),
    }
}

fn b_attr_values(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    match set(ev, &a[0])? {
        Some(x) if x.open.is_none() => Ok(Value::List(Rc::new(x.map.values().cloned().collect()))),
        _ => Ok(unknown("attrValues of an incompletely known set")),
    }
}

fn b_map_attrs(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let Some(x) = set(ev, &a[1])? else {
        return Ok(unknown("mapAttrs"));
    };
    let f = a[0].clone();
    let map = x
        .map
        .iter()
        .map(|(k, t)| {
            let (f, t, name) = (f.clone(), t.clone(), k.clone());
            (
                k.clone(),
                Thunk::native(move |ev| {
                    let f = ev.force(&f)?;
                    ev.apply2(f, v(Value::Str(name.clone())), t.clone())
                }),
            )
        })
        .collect();
    Ok(Value::Attrs(Rc::new(Attrs {
        map,
        open: x.open.clone(),
        lib: false,
    })))
}

fn b_filter(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let Some(l) = list(ev, &a[1])? else {
        return Ok(unknown("filter"));
    };
    let f = ev.force(&a[0])?;
    let mut out = Vec::new();
    for x in l.iter() {
        match ev.apply(f.clone(), x.clone())? {
            Value::Bool(true) => out.push(x.clone()),
            Value::Bool(false) => {}
            Value::Unknown(u) => return Ok(Value::Unknown(u)),
            other => {
                return err(format!(
                    "filter: the predicate returned a {}",
                    type_name(&other)
                ));
            }
        }
    }
    Ok(Value::List(Rc::new(out)))
}

fn b_list_to_attrs(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let Some(l) = list(ev, &a[0])? else {
        return Ok(unknown("listToAttrs"));
    };
    let mut map = BTreeMap::new();
    for x in l.iter() {
        let Some(pair) = set(ev, x)? else {
            return Ok(unknown("listToAttrs"));
        };
        let Some(n) = pair.map.get("name") else {
            return err("listToAttrs: an element has no name");
        };
        let Some(name) = string(ev, n)? else {
            return Ok(unknown("listToAttrs with an unknown name"));
        };
        let value = pair
            .map
            .get("value")
            .cloned()
            .unwrap_or_else(|| Thunk::native(|_| err("listToAttrs: an element has no value")));
        // The first occurrence wins, as in nix.
        map.entry(Rc::from(name.as_str())).or_insert(value);
    }
    Ok(attrs(map))
}

fn b_has_attr(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let (Some(n), Some(x)) = (string(ev, &a[0])?, set(ev, &a[1])?) else {
        return Ok(unknown("hasAttr"));
    };
    Ok(if x.map.contains_key(n.as_str()) {
        Value::Bool(true)
    } else if let Some(o) = &x.open {
        Value::Unknown(o.clone())
    } else {
        Value::Bool(false)
    })
}

fn b_get_attr(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let Some(n) = string(ev, &a[0])? else {
        return Ok(unknown("getAttr"));
    };
    let x = ev.force(&a[1])?;
    match ev.select(&x, &n)? {
        Some(y) => Ok(y),
        None => err(format!("attribute '{n}' missing")),
    }
}

fn b_elem(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let x = ev.force(&a[0])?;
    let Some(l) = list(ev, &a[1])? else {
        return Ok(unknown("elem"));
    };
    let mut undecided = false;
    for y in l.iter() {
        match ev.equal(&x, &ev.force(y)?)? {
            Some(true) => return Ok(Value::Bool(true)),
            None => undecided = true,
            Some(false) => {}
        }
    }
    Ok(if undecided {
        unknown("elem")
    } else {
        Value::Bool(false)
    })
}

fn b_head(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    match list(ev, &a[0])? {
        Some(l) => match l.first() {
            Some(t) => ev.force(t),
            None => err("head of an empty list"),
        },
        None => Ok(unknown("head")),
    }
}

fn b_tail(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    match list(ev, &a[0])? {
        Some(l) if !l.is_empty() => Ok(Value::List(Rc::new(l[1..].to_vec()))),
        Some(_) => err("tail of an empty list"),
        None => Ok(unknown("tail")),
    }
}

fn b_elem_at(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    match (list(ev, &a[0])?, ev.force(&a[1])?) {
        (Some(l), Value::Int(i)) => match l.get(i as usize) {
            Some(t) => ev.force(t),
            None => err("elemAt: index out of bounds"),
        },
        _ => Ok(unknown("elemAt")),
    }
}

fn b_concat_lists(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let Some(l) = list(ev, &a[0])? else {
        return Ok(unknown("concatLists"));
    };
    let mut out = Vec::new();
    for x in l.iter() {
        match list(ev, x)? {
            Some(inner) => out.extend(inner.iter().cloned()),
            None => return Ok(unknown("concatLists")),
        }
    }
    Ok(Value::List(Rc::new(out)))
}

fn b_concat_map(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let mapped = b_map(ev, a)?;
    b_concat_lists(ev, &[v(mapped)])
}

fn b_foldl(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let f = ev.force(&a[0])?;
    let Some(l) = list(ev, &a[2])? else {
        return Ok(unknown("foldl"));
    };
    let mut acc = a[1].clone();
    for x in l.iter() {
        let r = ev.apply2(f.clone(), acc, x.clone())?;
        acc = v(r);
    }
    ev.force(&acc)
}

fn l_foldr(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let f = ev.force(&a[0])?;
    let Some(l) = list(ev, &a[2])? else {
        return Ok(unknown("foldr"));
    };
    let mut acc = a[1].clone();
    for x in l.iter().rev() {
        let r = ev.apply2(f.clone(), x.clone(), acc)?;
        acc = v(r);
    }
    ev.force(&acc)
}

fn b_type_of(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let x = ev.force(&a[0])?;
    Ok(match x {
        Value::Unknown(u) => Value::Unknown(u),
        Value::Null => s("null"),
        Value::Bool(_) => s("bool"),
        Value::Int(_) => s("int"),
        Value::Float(_) => s("float"),
        Value::Str(_) => s("string"),
        Value::Path(_) => s("path"),
        Value::Attrs(_) | Value::System(_) => s("set"),
        Value::List(_) => s("list"),
        Value::Lambda(_) | Value::Prim(_) => s("lambda"),
    })
}

fn b_match(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let (Some(re), Some(text)) = (string(ev, &a[0])?, string(ev, &a[1])?) else {
        return Ok(unknown("match"));
    };
    // POSIX extended regular expressions, matched against the whole string.
    let Ok(r) = regex::Regex::new(&format!("^(?:{re})$")) else {
        return Ok(unknown("match with an unsupported regular expression"));
    };
    Ok(match r.captures(&text) {
        None => Value::Null,
        Some(c) => Value::List(Rc::new(
            c.iter()
                .skip(1)
                .map(|m| v(m.map_or(Value::Null, |m| s(m.as_str()))))
                .collect(),
        )),
    })
}

fn b_replace_strings(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let (Some(from), Some(to), Some(text)) =
        (list(ev, &a[0])?, list(ev, &a[1])?, string(ev, &a[2])?)
    else {
        return Ok(unknown("replaceStrings"));
    };
    let mut pats = Vec::new();
    for (f, t) in from.iter().zip(to.iter()) {
        match (string(ev, f)?, string(ev, t)?) {
            (Some(f), Some(t)) => pats.push((f, t)),
            _ => return Ok(unknown("replaceStrings")),
        }
    }
    let mut out = String::new();
    let mut i = 0;
    let bytes = text.as_str();
    'outer: while i <= bytes.len() {
        for (f, t) in &pats {
            if bytes[i..].starts_with(f.as_str()) {
                out.push_str(t);
                if f.is_empty() {
                    if let Some(c) = bytes[i..].chars().next() {
                        out.push(c);
                        i += c.len_utf8();
                    } else {
                        break 'outer;
                    }
                } else {
                    i += f.len();
                }
                continue 'outer;
            }
        }
        match bytes[i..].chars().next() {
            Some(c) => {
                out.push(c);
                i += c.len_utf8();
            }
            None => break,
        }
    }
    Ok(s(&out))
}

fn b_substring(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    match (ev.force(&a[0])?, ev.force(&a[1])?, string(ev, &a[2])?) {
        (Value::Int(start), Value::Int(len), Some(text)) => {
            let start = (start.max(0) as usize).min(text.len());
            let end = if len < 0 {
                text.len()
            } else {
                (start + len as usize).min(text.len())
            };
            Ok(s(text.get(start..end).unwrap_or("")))
        }
        _ => Ok(unknown("substring")),
    }
}

fn b_intersect_attrs(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let (Some(x), Some(y)) = (set(ev, &a[0])?, set(ev, &a[1])?) else {
        return Ok(unknown("intersectAttrs"));
    };
    let map = y
        .map
        .iter()
        .filter(|(k, _)| x.map.contains_key(*k))
        .map(|(k, t)| (k.clone(), t.clone()))
        .collect();
    Ok(attrs(map))
}

fn b_try_eval(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let (ok, value) = match ev.force(&a[0]) {
        Ok(x) => (true, x),
        Err(_) => (false, Value::Bool(false)),
    };
    let mut m = BTreeMap::new();
    m.insert(Rc::from("success"), v(Value::Bool(ok)));
    m.insert(Rc::from("value"), v(value));
    Ok(attrs(m))
}

fn b_gen_list(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    match ev.force(&a[1])? {
        Value::Int(n) if (0..100_000).contains(&n) => {
            let f = a[0].clone();
            Ok(Value::List(Rc::new(
                (0..n)
                    .map(|i| {
                        let f = f.clone();
                        Thunk::native(move |ev| ev.apply(ev.force(&f)?, v(Value::Int(i))))
                    })
                    .collect(),
            )))
        }
        _ => Ok(unknown("genList")),
    }
}

fn any_all(ev: &Eval, a: &[Thunk], any: bool) -> Result<Value, EvalError> {
    let f = ev.force(&a[0])?;
    let Some(l) = list(ev, &a[1])? else {
        return Ok(unknown("any/all"));
    };
    let mut undecided = false;
    for x in l.iter() {
        match ev.apply(f.clone(), x.clone())? {
            Value::Bool(b) if b == any => return Ok(Value::Bool(any)),
            Value::Bool(_) => {}
            _ => undecided = true,
        }
    }
    Ok(if undecided {
        unknown("any/all")
    } else {
        Value::Bool(!any)
    })
}

fn b_cat_attrs(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let (Some(n), Some(l)) = (string(ev, &a[0])?, list(ev, &a[1])?) else {
        return Ok(unknown("catAttrs"));
    };
    let mut out = Vec::new();
    for x in l.iter() {
        if let Some(s) = set(ev, x)?
            && let Some(t) = s.map.get(n.as_str())
        {
            out.push(t.clone());
        }
    }
    Ok(Value::List(Rc::new(out)))
}

fn json_to_value(j: &serde_json::Value) -> Value {
    match j {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(0.0))),
        serde_json::Value::String(x) => s(x),
        serde_json::Value::Array(a) => {
            Value::List(Rc::new(a.iter().map(|x| v(json_to_value(x))).collect()))
        }
        serde_json::Value::Object(o) => attrs(
            o.iter()
                .map(|(k, x)| (Rc::from(k.as_str()), v(json_to_value(x))))
                .collect(),
        ),
    }
}

fn toml_to_value(t: &toml::Value) -> Value {
    match t {
        toml::Value::String(x) => s(x),
        toml::Value::Integer(i) => Value::Int(*i),
        toml::Value::Float(f) => Value::Float(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => s(&d.to_string()),
        toml::Value::Array(a) => {
            Value::List(Rc::new(a.iter().map(|x| v(toml_to_value(x))).collect()))
        }
        toml::Value::Table(o) => attrs(
            o.iter()
                .map(|(k, x)| (Rc::from(k.as_str()), v(toml_to_value(x))))
                .collect(),
        ),
    }
}

fn b_from_json(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let Some(text) = string(ev, &a[0])? else {
        return Ok(unknown("fromJSON"));
    };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(j) => Ok(json_to_value(&j)),
        Err(e) => err(format!("fromJSON: {e}")),
    }
}

fn b_from_toml(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let Some(text) = string(ev, &a[0])? else {
        return Ok(unknown("fromTOML"));
    };
    match text.parse::<toml::Table>() {
        Ok(t) => Ok(toml_to_value(&toml::Value::Table(t))),
        Err(e) => err(format!("fromTOML: {}", e.message())),
    }
}

fn b_concat_strings_sep(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let (Some(sep), Some(l)) = (string(ev, &a[0])?, list(ev, &a[1])?) else {
        return Ok(unknown("concatStringsSep"));
    };
    let mut parts = Vec::new();
    for x in l.iter() {
        let y = ev.force(x)?;
        match ev.coerce_str(&y)? {
            Some(p) => parts.push(p),
            None => return Ok(unknown("concatStringsSep")),
        }
    }
    Ok(s(&parts.join(&sep)))
}

fn b_sort(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    // Order rarely matters for names; keep the list as it is.
    ev.force(&a[1])
}

fn b_zip_attrs_with(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let Some(l) = list(ev, &a[1])? else {
        return Ok(unknown("zipAttrsWith"));
    };
    let mut names: BTreeMap<Rc<str>, Vec<Thunk>> = BTreeMap::new();
    for x in l.iter() {
        let Some(s) = set(ev, x)? else {
            return Ok(unknown("zipAttrsWith"));
        };
        for (k, t) in &s.map {
            names.entry(k.clone()).or_default().push(t.clone());
        }
    }
    let f = a[0].clone();
    Ok(attrs(
        names
            .into_iter()
            .map(|(k, vals)| {
                let (f, name) = (f.clone(), k.clone());
                (
                    k,
                    Thunk::native(move |ev| {
                        let f = ev.force(&f)?;
                        ev.apply2(
                            f,
                            v(Value::Str(name.clone())),
                            v(Value::List(Rc::new(vals.clone()))),
                        )
                    }),
                )
            })
            .collect(),
    ))
}

fn b_partition(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let Some(l) = list(ev, &a[1])? else {
        return Ok(unknown("partition"));
    };
    let f = ev.force(&a[0])?;
    let (mut right, mut wrong) = (Vec::new(), Vec::new());
    for x in l.iter() {
        match ev.apply(f.clone(), x.clone())? {
            Value::Bool(true) => right.push(x.clone()),
            Value::Bool(false) => wrong.push(x.clone()),
            _ => return Ok(unknown("partition")),
        }
    }
    let mut m = BTreeMap::new();
    m.insert(Rc::from("right"), v(Value::List(Rc::new(right))));
    m.insert(Rc::from("wrong"), v(Value::List(Rc::new(wrong))));
    Ok(attrs(m))
}

fn l_gen_attrs(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let Some(l) = list(ev, &a[0])? else {
        return Ok(unknown("genAttrs"));
    };
    let mut map = BTreeMap::new();
    for x in l.iter() {
        let Some(name) = string(ev, x)? else {
            return Ok(unknown("genAttrs over unknown names"));
        };
        let (f, nt) = (a[1].clone(), x.clone());
        map.insert(
            Rc::from(name.as_str()),
            Thunk::native(move |ev| ev.apply(ev.force(&f)?, nt.clone())),
        );
    }
    Ok(attrs(map))
}

fn l_map_attrs_prime(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let l = l_map_attrs_to_list(ev, a)?;
    b_list_to_attrs(ev, &[v(l)])
}

fn l_map_attrs_to_list(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let Some(x) = set(ev, &a[1])? else {
        return Ok(unknown("mapAttrsToList"));
    };
    if x.open.is_some() {
        return Ok(unknown("mapAttrsToList of an incompletely known set"));
    }
    let f = a[0].clone();
    Ok(Value::List(Rc::new(
        x.map
            .iter()
            .map(|(k, t)| {
                let (f, t, name) = (f.clone(), t.clone(), k.clone());
                Thunk::native(move |ev| {
                    let f = ev.force(&f)?;
                    ev.apply2(f, v(Value::Str(name.clone())), t.clone())
                })
            })
            .collect(),
    )))
}

fn l_filter_attrs(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let Some(x) = set(ev, &a[1])? else {
        return Ok(unknown("filterAttrs"));
    };
    let f = ev.force(&a[0])?;
    let mut map = BTreeMap::new();
    for (k, t) in &x.map {
        match ev.apply2(f.clone(), v(Value::Str(k.clone())), t.clone())? {
            Value::Bool(true) => {
                map.insert(k.clone(), t.clone());
            }
            Value::Bool(false) => {}
            Value::Unknown(u) => return Ok(Value::Unknown(u)),
            other => {
                return err(format!(
                    "filterAttrs: the predicate returned a {}",
                    type_name(&other)
                ));
            }
        }
    }
    Ok(Value::Attrs(Rc::new(Attrs {
        map,
        open: x.open.clone(),
        lib: false,
    })))
}

fn l_recursive_update(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let (x, y) = (ev.force(&a[0])?, ev.force(&a[1])?);
    recursive_update(ev, x, y)
}

fn recursive_update(ev: &Eval, x: Value, y: Value) -> Result<Value, EvalError> {
    match (x, y) {
        (Value::Attrs(p), Value::Attrs(q)) => {
            let mut map = p.map.clone();
            for (k, t) in &q.map {
                let merged = match p.map.get(k) {
                    Some(old) => {
                        let (old, new) = (old.clone(), t.clone());
                        Thunk::native(move |ev| {
                            let (o, n) = (ev.force(&old)?, ev.force(&new)?);
                            match (&o, &n) {
                                (Value::Attrs(_), Value::Attrs(_)) => recursive_update(ev, o, n),
                                _ => Ok(n),
                            }
                        })
                    }
                    None => t.clone(),
                };
                map.insert(k.clone(), merged);
            }
            Ok(Value::Attrs(Rc::new(Attrs {
                map,
                open: q.open.clone().or_else(|| p.open.clone()),
                lib: p.lib || q.lib,
            })))
        }
        (Value::Attrs(p), Value::Unknown(u)) | (Value::Unknown(u), Value::Attrs(p)) => {
            Ok(Value::Attrs(Rc::new(Attrs {
                map: p.map.clone(),
                open: Some(u),
                lib: p.lib,
            })))
        }
        (_, y) => {
            let _ = ev;
            Ok(y)
        }
    }
}

fn l_concat_map_attrs(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let l = l_map_attrs_to_list(ev, a)?;
    l_merge_attrs_list(ev, &[v(l)])
}

fn l_merge_attrs_list(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let Some(l) = list(ev, &a[0])? else {
        return Ok(unknown("mergeAttrsList"));
    };
    let mut map = BTreeMap::new();
    let mut open = None;
    for x in l.iter() {
        match set(ev, x)? {
            Some(s) => {
                for (k, t) in &s.map {
                    map.insert(k.clone(), t.clone());
                }
                if s.open.is_some() {
                    open = s.open.clone();
                }
            }
            None => open = Some(Rc::from("mergeAttrsList")),
        }
    }
    Ok(Value::Attrs(Rc::new(Attrs {
        map,
        open,
        lib: false,
    })))
}

fn l_flatten(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    fn go(ev: &Eval, t: &Thunk, out: &mut Vec<Thunk>) -> Result<bool, EvalError> {
        match ev.force(t)? {
            Value::List(l) => {
                for x in l.iter() {
                    if !go(ev, x, out)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Value::Unknown(_) => Ok(false),
            _ => {
                out.push(t.clone());
                Ok(true)
            }
        }
    }
    let mut out = Vec::new();
    Ok(if go(ev, &a[0], &mut out)? {
        Value::List(Rc::new(out))
    } else {
        unknown("flatten")
    })
}

fn l_pipe(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let Some(fs) = list(ev, &a[1])? else {
        return Ok(unknown("pipe"));
    };
    let mut acc = a[0].clone();
    for f in fs.iter() {
        let r = ev.apply(ev.force(f)?, acc)?;
        acc = v(r);
    }
    ev.force(&acc)
}

fn l_split_string(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let (Some(sep), Some(text)) = (string(ev, &a[0])?, string(ev, &a[1])?) else {
        return Ok(unknown("splitString"));
    };
    if sep.is_empty() {
        return Ok(unknown("splitString"));
    }
    Ok(Value::List(Rc::new(
        text.split(sep.as_str()).map(|p| v(s(p))).collect(),
    )))
}

fn l_imap(ev: &Eval, a: &[Thunk], base: i64) -> Result<Value, EvalError> {
    let Some(l) = list(ev, &a[1])? else {
        return Ok(unknown("imap"));
    };
    let f = a[0].clone();
    Ok(Value::List(Rc::new(
        l.iter()
            .enumerate()
            .map(|(i, x)| {
                let (f, x) = (f.clone(), x.clone());
                Thunk::native(move |ev| {
                    let f = ev.force(&f)?;
                    ev.apply2(f, v(Value::Int(i as i64 + base)), x.clone())
                })
            })
            .collect(),
    )))
}

fn l_fix(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let f = a[0].clone();
    let cell: Rc<std::cell::RefCell<Option<Thunk>>> = Rc::new(Default::default());
    let c2 = cell.clone();
    let result = Thunk::native(move |ev| {
        let me = c2.borrow().clone().expect("set before forcing");
        ev.apply(ev.force(&f)?, me)
    });
    *cell.borrow_mut() = Some(result.clone());
    ev.force(&result)
}

/// `lib.extend (final: prev: { … })` on nixpkgs' lib: the extension's
/// names over guard's `lib`.
fn l_extend_lib(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let base = Value::Attrs(Rc::new(Attrs {
        map: BTreeMap::new(),
        open: None,
        lib: true,
    }));
    extend(ev, base, a[0].clone())
}

fn extend(ev: &Eval, base: Value, overlay: Thunk) -> Result<Value, EvalError> {
    let cell: Rc<std::cell::RefCell<Option<Thunk>>> = Rc::new(Default::default());
    let c2 = cell.clone();
    let base2 = base.clone();
    let result = Thunk::native(move |ev| {
        let me = c2.borrow().clone().expect("set before forcing");
        let ext = ev.apply2(ev.force(&overlay)?, me, v(base2.clone()))?;
        ev.binop(rnix::ast::BinOpKind::Update, base2.clone(), ext)
    });
    *cell.borrow_mut() = Some(result.clone());
    ev.force(&result)
}

fn l_make_extensible(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let fixed = l_fix(ev, a)?;
    let Value::Attrs(x) = fixed else {
        return Ok(fixed);
    };
    let mut map = x.map.clone();
    let me = Value::Attrs(x.clone());
    map.insert(
        Rc::from("extend"),
        v(prim("extend", 1, |_, _| Ok(unknown("an extended library")))),
    );
    let _ = me;
    Ok(Value::Attrs(Rc::new(Attrs {
        map,
        open: x.open.clone(),
        lib: x.lib,
    })))
}

fn l_list_files_recursive(ev: &Eval, a: &[Thunk]) -> Result<Value, EvalError> {
    let Some(dir) = repo_path(ev, &a[0])? else {
        return Ok(unknown("listFilesRecursive"));
    };
    let files: Vec<Thunk> = ev
        .files_under(&dir)
        .into_iter()
        .map(|p| v(Value::Path(Rc::from(p.as_str()))))
        .collect();
    Ok(Value::List(Rc::new(files)))
}
