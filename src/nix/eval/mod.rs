//! A small, lazy Nix evaluator over one snapshot: enough of the language,
//! `builtins` and nixpkgs' `lib` to compute what a flake's outputs *are
//! named* — the host list — the way nix itself computes it (`readDir`,
//! `genAttrs`, `mapAttrs`, helpers called with literal names, flake-parts
//! modules, `fromTOML` registries), without nix and without inputs.
//!
//! Inputs are not available statically: they evaluate to [`Value::Unknown`],
//! which absorbs selections and applications. Selecting a well-known `lib`
//! function from an unknown value (`nixpkgs.lib.genAttrs`) yields guard's own
//! implementation, and a few framework entry points (`nixosSystem`,
//! flake-parts' `mkFlake`, clan, nixos-unified) have native models in
//! [`flake`]. Anything the evaluator cannot decide is an error or an
//! `Unknown`, never a guess: host discovery falls back and says so.
//!
//! Evaluation is bounded (steps and depth), reads only the snapshot, and
//! never runs a process.

mod builtins;
pub mod flake;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::rc::Rc;

use rnix::ast::{self, AstToken, HasEntry, InterpolPart};
use rowan::ast::AstNode;

use crate::git::{BStr, Snapshot};
use crate::nix::graph::{PathKind, Tree};
use crate::nix::parse::normalize;

/// Strings that hold a repository path (`"${./x}"`, `"${self}/hosts"`) start
/// with this, so `import` and `readDir` can map them back.
pub const SOURCE_PREFIX: &str = "/nix/store/guard-flake-source";

/// A set holding this key selects missing names from its value: `self`
/// knows its `outPath` without forcing the outputs it also stands for.
pub const LAZY_REST: &str = "__guardLazyRest";

/// A Nix value. Attribute sets and lists hold thunks (laziness is what makes
/// `attrNames (mapAttrs mkHost hosts)` cheap and independent of the hosts).
#[derive(Clone)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    /// A repository-relative path ("" is the repository root).
    Path(Rc<str>),
    Attrs(Rc<Attrs>),
    List(Rc<Vec<Thunk>>),
    Lambda(Rc<Closure>),
    Prim(Rc<Prim>),
    /// Something static analysis cannot know (an input, `<nixpkgs>`, an
    /// environment variable), named by where it came from.
    Unknown(Rc<str>),
    /// The result of `nixosSystem`/`darwinSystem`/`homeManagerConfiguration`.
    System(Rc<System>),
}

/// An attribute set. `open` marks a set that may hold more attributes than
/// the ones known (an update with an unknown value, a module argument set).
pub struct Attrs {
    pub map: BTreeMap<Rc<str>, Thunk>,
    pub open: Option<Rc<str>>,
    /// nixpkgs' `lib` (or an extension of it): names it lacks resolve to
    /// guard's implementation of the `lib` function of that name.
    pub lib: bool,
}

/// A configuration built by a system builder, with the arguments it got.
pub struct System {
    pub kind: TargetKind,
    pub args: Thunk,
}

/// What a flake output builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    Nixos,
    Darwin,
    Home,
}

pub struct Closure {
    lambda: ast::Lambda,
    env: Rc<Env>,
}

/// A builtin or `lib` function, applied to the arguments collected so far.
pub struct Prim {
    pub name: &'static str,
    pub arity: usize,
    pub args: Vec<Thunk>,
    pub f: PrimFn,
}

pub type PrimFn = fn(&Eval, &[Thunk]) -> Result<Value, EvalError>;

/// A thunk computed by guard rather than from an expression.
type NativeFn = Rc<dyn Fn(&Eval) -> Result<Value, EvalError>>;

/// A lazily evaluated value.
#[derive(Clone)]
pub struct Thunk(Rc<RefCell<ThunkState>>);

enum ThunkState {
    Expr(ast::Expr, Rc<Env>),
    Native(NativeFn),
    Forcing,
    Done(Value),
}

impl Thunk {
    pub fn value(v: Value) -> Thunk {
        Thunk(Rc::new(RefCell::new(ThunkState::Done(v))))
    }
    fn expr(e: ast::Expr, env: Rc<Env>) -> Thunk {
        Thunk(Rc::new(RefCell::new(ThunkState::Expr(e, env))))
    }
    pub fn native(f: impl Fn(&Eval) -> Result<Value, EvalError> + 'static) -> Thunk {
        Thunk(Rc::new(RefCell::new(ThunkState::Native(Rc::new(f)))))
    }
}

/// A lexical scope: bindings, or a `with` namespace.
pub struct Env {
    vars: HashMap<Rc<str>, Thunk>,
    with: Option<Thunk>,
    parent: Option<Rc<Env>>,
    /// Directory of the file being evaluated (relative paths resolve here).
    dir: Rc<str>,
    /// The file being evaluated, for error positions.
    file: Rc<str>,
}

/// Why evaluation stopped, with the file and line where known.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EvalError {
    pub message: String,
    pub file: Option<String>,
    pub line: Option<usize>,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: {}", self.message),
            (Some(file), None) => write!(f, "{file}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl EvalError {
    pub fn new(message: impl Into<String>) -> EvalError {
        EvalError {
            message: message.into(),
            file: None,
            line: None,
        }
    }
}

fn err<T>(message: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError::new(message))
}

/// Evaluation steps before giving up: far more than any flake's host list
/// needs, far less than a runaway recursion.
const FUEL: u64 = 3_000_000;
const MAX_DEPTH: u32 = 2_000;

/// The evaluator of one snapshot.
pub struct Eval<'a> {
    snapshot: &'a Snapshot,
    tree: Tree<'a>,
    /// Parsed files (text kept for error lines).
    files: RefCell<HashMap<String, Rc<(ast::Root, String)>>>,
    /// `import` results: nix evaluates each file once.
    imports: RefCell<HashMap<String, Value>>,
    /// The file an attribute set or function came from, when it is the
    /// value of an `import` (by address: `imports` keeps each alive), so a
    /// module list holding `import ./hosts/alpha` names that file.
    origins: RefCell<HashMap<usize, String>>,
    fuel: Cell<u64>,
    depth: Cell<u32>,
    root_env: Rc<Env>,
    /// Files read by the evaluation (imports, readFile, readDir), in order.
    pub reads: RefCell<Vec<String>>,
}

impl<'a> Eval<'a> {
    pub fn new(snapshot: &'a Snapshot) -> Eval<'a> {
        Eval {
            snapshot,
            tree: Tree::new(snapshot),
            files: Default::default(),
            imports: Default::default(),
            origins: Default::default(),
            fuel: Cell::new(FUEL),
            depth: Cell::new(0),
            root_env: builtins::root_env(),
            reads: Default::default(),
        }
    }

    /// Tree queries, each recorded in [`Eval::reads`]: the evaluation is a
    /// function of exactly what it asked, which is what makes its result
    /// cacheable (see [`fingerprint`]).
    pub fn is_file(&self, path: &str) -> bool {
        self.reads.borrow_mut().push(format!("?{path}"));
        self.tree.is_file(path)
    }

    pub fn is_dir(&self, path: &str) -> bool {
        self.reads.borrow_mut().push(format!("?{path}"));
        self.tree.is_dir(path)
    }

    pub fn kind(&self, path: &str) -> Option<PathKind> {
        self.reads.borrow_mut().push(format!("?{path}"));
        self.tree.kind(path)
    }

    /// The entries of `dir` with whether each is a directory.
    pub fn children(&self, dir: &str) -> BTreeMap<String, bool> {
        self.reads.borrow_mut().push(format!("{dir}/"));
        self.tree.children(dir)
    }

    /// Every file below `dir`.
    pub fn files_under(&self, dir: &str) -> Vec<String> {
        self.reads.borrow_mut().push(format!("{dir}/**"));
        self.tree
            .under(dir)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    fn tick(&self) -> Result<(), EvalError> {
        let f = self.fuel.get();
        if f == 0 {
            return err("evaluation is too costly to do statically");
        }
        self.fuel.set(f - 1);
        Ok(())
    }

    /// Forces a thunk to weak head normal form.
    pub fn force(&self, t: &Thunk) -> Result<Value, EvalError> {
        let state = std::mem::replace(&mut *t.0.borrow_mut(), ThunkState::Forcing);
        let result = match state {
            ThunkState::Done(v) => {
                *t.0.borrow_mut() = ThunkState::Done(v.clone());
                return Ok(v);
            }
            ThunkState::Forcing => return err("infinite recursion encountered"),
            ThunkState::Expr(e, env) => self.eval(&e, &env),
            ThunkState::Native(f) => f(self),
        };
        match result {
            Ok(v) => {
                *t.0.borrow_mut() = ThunkState::Done(v.clone());
                Ok(v)
            }
            Err(e) => {
                // Leave it failing the same way next time, without a
                // misleading "infinite recursion".
                let e2 = e.clone();
                *t.0.borrow_mut() = ThunkState::Native(Rc::new(move |_| Err(e2.clone())));
                Err(e)
            }
        }
    }

    /// Evaluates a file as `import` does (cached).
    pub fn import(&self, path: &str) -> Result<Value, EvalError> {
        let file = if self.is_file(path) {
            path.to_string()
        } else if self.is_dir(path) {
            join(path, "default.nix")
        } else {
            return err(format!("import of {path}: no such file in the snapshot"));
        };
        if let Some(v) = self.imports.borrow().get(&file) {
            return Ok(v.clone());
        }
        let parsed = self.parse(&file)?;
        let expr = parsed
            .0
            .expr()
            .ok_or_else(|| EvalError::new(format!("{file}: empty file")))?;
        let env = Rc::new(Env {
            vars: HashMap::new(),
            with: None,
            parent: Some(self.root_env.clone()),
            dir: parent_dir(&file).into(),
            file: file.as_str().into(),
        });
        let v = self.eval(&expr, &env)?;
        if let Some(addr) = value_address(&v) {
            self.origins.borrow_mut().insert(addr, file.clone());
        }
        self.imports.borrow_mut().insert(file, v.clone());
        Ok(v)
    }

    /// The file `v` is the `import` of, if it is one (an attribute set or a
    /// function, as a file's value).
    pub fn origin(&self, v: &Value) -> Option<String> {
        self.origins.borrow().get(&value_address(v)?).cloned()
    }

    fn parse(&self, file: &str) -> Result<Rc<(ast::Root, String)>, EvalError> {
        if let Some(p) = self.files.borrow().get(file) {
            return Ok(p.clone());
        }
        let text = self.read_text(file)?;
        let parse = rnix::Root::parse(&text);
        if let Some(e) = parse.errors().first() {
            return err(format!("{file} does not parse: {e}"));
        }
        let p = Rc::new((parse.tree(), text));
        self.files.borrow_mut().insert(file.to_string(), p.clone());
        Ok(p)
    }

    /// The text of a tracked file.
    pub fn read_text(&self, file: &str) -> Result<String, EvalError> {
        self.reads.borrow_mut().push(file.to_string());
        match self.snapshot.read(BStr::new(file)) {
            Ok(Some(bytes)) => String::from_utf8(bytes)
                .map_err(|_| EvalError::new(format!("{file} is not valid UTF-8"))),
            Ok(None) => err(format!("{file}: no such file in the snapshot")),
            Err(e) => err(format!("{file}: cannot read it: {e}")),
        }
    }

    /// `builtins.readDir`: name -> "directory" | "regular" | "symlink".
    pub fn read_dir(&self, dir: &str) -> Result<Value, EvalError> {
        if !self.tree.is_dir(dir) {
            return err(format!(
                "readDir {dir:?}: no such directory in the snapshot"
            ));
        }
        self.reads.borrow_mut().push(format!("{dir}/"));
        let mut map = BTreeMap::new();
        for (name, _) in self.tree.children(dir) {
            let kind = match self.tree.kind(&join(dir, &name)) {
                Some(PathKind::Dir) => "directory",
                Some(PathKind::Symlink) => "symlink",
                _ => "regular",
            };
            map.insert(
                Rc::from(name.as_str()),
                Thunk::value(Value::Str(kind.into())),
            );
        }
        Ok(attrs(map))
    }

    fn error_at(&self, e: EvalError, node: &rnix::SyntaxNode, env: &Env) -> EvalError {
        if e.file.is_some() {
            return e;
        }
        let line = self.files.borrow().get(&*env.file).map(|p| {
            let off: usize = node.text_range().start().into();
            p.1[..off.min(p.1.len())].matches('\n').count() + 1
        });
        EvalError {
            message: e.message,
            file: Some(env.file.to_string()),
            line,
        }
    }

    /// Evaluates an expression to weak head normal form.
    pub fn eval(&self, expr: &ast::Expr, env: &Rc<Env>) -> Result<Value, EvalError> {
        self.tick()?;
        let d = self.depth.get();
        if d > MAX_DEPTH {
            return err("evaluation nests too deeply to do statically");
        }
        self.depth.set(d + 1);
        let r = self.eval_inner(expr, env);
        self.depth.set(d);
        r.map_err(|e| self.error_at(e, expr.syntax(), env))
    }

    fn eval_inner(&self, expr: &ast::Expr, env: &Rc<Env>) -> Result<Value, EvalError> {
        use ast::Expr as E;
        match expr {
            E::Paren(p) => self.eval(&child(p.expr())?, env),
            E::Root(r) => self.eval(&child(r.expr())?, env),
            E::Literal(l) => Ok(match l.kind() {
                ast::LiteralKind::Integer(i) => Value::Int(i.value().unwrap_or(0)),
                ast::LiteralKind::Float(f) => Value::Float(f.value().unwrap_or(0.0)),
                ast::LiteralKind::Uri(u) => Value::Str(u.syntax().text().into()),
            }),
            E::Str(s) => self.eval_str(s, env),
            E::PathRel(p) => {
                let mut text = String::new();
                for part in p.parts() {
                    match part {
                        InterpolPart::Literal(l) => text.push_str(l.text()),
                        InterpolPart::Interpolation(i) => {
                            match self.coerce_str(&self.eval(&child(i.expr())?, env)?)? {
                                Some(s) => text.push_str(&s),
                                None => return Ok(unknown("an interpolated path")),
                            }
                        }
                    }
                }
                Ok(self.rel_path(&env.dir, &text))
            }
            E::PathAbs(_) | E::PathHome(_) => Ok(unknown("a path outside the repository")),
            E::PathSearch(p) => Ok(unknown(&p.syntax().text().to_string())),
            E::CurPos(_) => Ok(unknown("__curPos")),
            E::Ident(i) => {
                let name = ident_text(i);
                match lookup(env, &name) {
                    Some(t) => self.force(&t),
                    None => err(format!("undefined variable '{name}'")),
                }
            }
            E::List(l) => Ok(Value::List(Rc::new(
                l.items().map(|e| Thunk::expr(e, env.clone())).collect(),
            ))),
            E::AttrSet(a) => {
                if a.rec_token().is_some() {
                    let (_, v) = self.rec_scope(a, env)?;
                    Ok(v)
                } else {
                    self.attrset(a, env, env)
                }
            }
            E::LetIn(l) => {
                let scope = self.let_scope(l, env)?;
                self.eval(&child(l.body())?, &scope)
            }
            E::LegacyLet(_) => err("legacy `let { }` is not supported"),
            E::With(w) => {
                let ns = Thunk::expr(child(w.namespace())?, env.clone());
                let scope = Rc::new(Env {
                    vars: HashMap::new(),
                    with: Some(ns),
                    parent: Some(env.clone()),
                    dir: env.dir.clone(),
                    file: env.file.clone(),
                });
                self.eval(&child(w.body())?, &scope)
            }
            E::Lambda(l) => Ok(Value::Lambda(Rc::new(Closure {
                lambda: l.clone(),
                env: env.clone(),
            }))),
            E::Apply(a) => {
                let f = self.eval(&child(a.lambda())?, env)?;
                let arg = Thunk::expr(child(a.argument())?, env.clone());
                self.apply(f, arg)
            }
            E::Select(s) => self.eval_select(s, env),
            E::HasAttr(h) => {
                let mut v = self.eval(&child(h.expr())?, env)?;
                let names: Vec<_> = h
                    .attrpath()
                    .map(|p| p.attrs().collect())
                    .unwrap_or_default();
                for (i, attr) in names.iter().enumerate() {
                    let Some(name) = self.attr_name(attr, env)? else {
                        return Ok(unknown("a dynamic attribute name"));
                    };
                    match &v {
                        Value::Attrs(a) => match a.map.get(name.as_str()) {
                            Some(t) => {
                                if i + 1 < names.len() {
                                    v = self.force(t)?;
                                }
                            }
                            None if a.lib && builtins::lib_fn(&name).is_some() => {
                                return Ok(Value::Bool(i + 1 == names.len()));
                            }
                            None => {
                                return Ok(match &a.open {
                                    Some(o) => unknown(o),
                                    None => Value::Bool(false),
                                });
                            }
                        },
                        Value::Unknown(u) => return Ok(Value::Unknown(u.clone())),
                        _ => return Ok(Value::Bool(false)),
                    }
                }
                Ok(Value::Bool(true))
            }
            E::IfElse(i) => match self.eval(&child(i.condition())?, env)? {
                Value::Bool(true) => self.eval(&child(i.body())?, env),
                Value::Bool(false) => self.eval(&child(i.else_body())?, env),
                Value::Unknown(u) => Ok(Value::Unknown(u)),
                _ => err("if: the condition is not a Boolean"),
            },
            E::Assert(a) => match self.eval(&child(a.condition())?, env)? {
                Value::Bool(false) => err("assertion failed"),
                _ => self.eval(&child(a.body())?, env),
            },
            E::UnaryOp(u) => {
                let v = self.eval(&child(u.expr())?, env)?;
                match (u.operator(), v) {
                    (Some(ast::UnaryOpKind::Invert), Value::Bool(b)) => Ok(Value::Bool(!b)),
                    (Some(ast::UnaryOpKind::Negate), Value::Int(i)) => Ok(Value::Int(-i)),
                    (Some(ast::UnaryOpKind::Negate), Value::Float(f)) => Ok(Value::Float(-f)),
                    (_, Value::Unknown(u)) => Ok(Value::Unknown(u)),
                    _ => err("unary operator on a value of the wrong type"),
                }
            }
            E::BinOp(b) => self.eval_binop(b, env),
            E::Error(_) => err("syntax error"),
        }
    }

    fn rel_path(&self, dir: &str, text: &str) -> Value {
        let full = if let Some(rest) = text.strip_prefix("./") {
            join(dir, rest)
        } else if text == "." || text == "./." {
            dir.to_string()
        } else {
            join(dir, text)
        };
        match normalize(&full) {
            Some(p) => Value::Path(p.into()),
            None => unknown("a path outside the repository"),
        }
    }

    fn eval_str(&self, s: &ast::Str, env: &Rc<Env>) -> Result<Value, EvalError> {
        let mut out = String::new();
        for part in s.normalized_parts() {
            match part {
                InterpolPart::Literal(l) => out.push_str(&l),
                InterpolPart::Interpolation(i) => {
                    let v = self.eval(&child(i.expr())?, env)?;
                    match self.coerce_str(&v)? {
                        Some(s) => out.push_str(&s),
                        None => return Ok(unknown("an interpolated string")),
                    }
                }
            }
        }
        Ok(Value::Str(out.into()))
    }

    /// String coercion as in interpolation; `None` when unknown.
    pub fn coerce_str(&self, v: &Value) -> Result<Option<String>, EvalError> {
        Ok(match v {
            Value::Str(s) => Some(s.to_string()),
            Value::Path(p) => Some(source_string(p)),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(if *b { "1".into() } else { String::new() }),
            Value::Null => Some(String::new()),
            Value::Attrs(a) => {
                if let Some(t) = a.map.get("__toString") {
                    let f = self.force(t)?;
                    let r = self.apply(f, Thunk::value(v.clone()))?;
                    return self.coerce_str(&r);
                }
                match a.map.get("outPath") {
                    Some(t) => {
                        let o = self.force(t)?;
                        self.coerce_str(&o)?
                    }
                    None => None,
                }
            }
            Value::List(items) => {
                let mut parts = Vec::new();
                for t in items.iter() {
                    match self.coerce_str(&self.force(t)?)? {
                        Some(s) => parts.push(s),
                        None => return Ok(None),
                    }
                }
                Some(parts.join(" "))
            }
            _ => None,
        })
    }

    /// The name an attribute (`a`, `"a"`, `${e}`) stands for; `None` when
    /// unknown.
    fn attr_name(&self, attr: &ast::Attr, env: &Rc<Env>) -> Result<Option<String>, EvalError> {
        match attr {
            ast::Attr::Ident(i) => Ok(Some(ident_text(i))),
            ast::Attr::Str(s) => match self.eval_str(s, env)? {
                Value::Str(s) => Ok(Some(s.to_string())),
                _ => Ok(None),
            },
            ast::Attr::Dynamic(d) => {
                let v = self.eval(&child(d.expr())?, env)?;
                match v {
                    Value::Str(s) => Ok(Some(s.to_string())),
                    Value::Unknown(_) => Ok(None),
                    _ => err("a dynamic attribute name is not a string"),
                }
            }
        }
    }

    fn eval_select(&self, s: &ast::Select, env: &Rc<Env>) -> Result<Value, EvalError> {
        let mut v = self.eval(&child(s.expr())?, env)?;
        let attrs: Vec<_> = s
            .attrpath()
            .map(|p| p.attrs().collect())
            .unwrap_or_default();
        for attr in &attrs {
            let Some(name) = self.attr_name(attr, env)? else {
                return Ok(unknown("a dynamic attribute name"));
            };
            let selected = match (&v, s.default_expr()) {
                // `(1).a or d` is `d`: `or` also covers a non-set.
                (Value::Attrs(_) | Value::Unknown(_) | Value::System(_), _) | (_, None) => {
                    self.select(&v, &name)?
                }
                (_, Some(_)) => None,
            };
            match selected {
                Some(next) => v = next,
                None => {
                    return match s.default_expr() {
                        Some(d) => self.eval(&d, env),
                        None => err(format!("attribute '{name}' missing")),
                    };
                }
            }
        }
        Ok(v)
    }

    /// `v.name`: `None` when `v` is a set without it.
    pub fn select(&self, v: &Value, name: &str) -> Result<Option<Value>, EvalError> {
        match v {
            Value::Attrs(a) => match a.map.get(name) {
                Some(t) => self.force(t).map(Some),
                None if a.map.contains_key(LAZY_REST) => {
                    let rest = self.force(&a.map[LAZY_REST])?;
                    self.select(&rest, name)
                }
                None if a.lib => Ok(Some(
                    flake::framework_fn(a.open.as_deref().unwrap_or("lib"), name)
                        .unwrap_or_else(|| unknown(&format!("lib.{name}"))),
                )),
                None => Ok(a.open.as_ref().map(|o| unknown(&format!("{o}.{name}")))),
            },
            Value::Unknown(u) => Ok(Some(flake::select_unknown(u, name))),
            Value::System(s) => match name {
                "config" | "options" | "pkgs" => Ok(Some(unknown(&format!("system.{name}")))),
                "_module" | "extendModules" | "type" | "class" => Ok(Some(unknown(name))),
                _ => {
                    let _ = s;
                    Ok(None)
                }
            },
            _ => err(format!(
                "cannot select attribute '{name}' of a {}",
                type_name(v)
            )),
        }
    }

    fn eval_binop(&self, b: &ast::BinOp, env: &Rc<Env>) -> Result<Value, EvalError> {
        use ast::BinOpKind as K;
        let op = b
            .operator()
            .ok_or_else(|| EvalError::new("unknown operator"))?;
        let lhs = child(b.lhs())?;
        let rhs = child(b.rhs())?;
        match op {
            K::And => match self.eval(&lhs, env)? {
                Value::Bool(false) => Ok(Value::Bool(false)),
                Value::Bool(true) => self.eval(&rhs, env),
                Value::Unknown(u) => match self.eval(&rhs, env)? {
                    Value::Bool(false) => Ok(Value::Bool(false)),
                    _ => Ok(Value::Unknown(u)),
                },
                _ => err("&&: not a Boolean"),
            },
            K::Or => match self.eval(&lhs, env)? {
                Value::Bool(true) => Ok(Value::Bool(true)),
                Value::Bool(false) => self.eval(&rhs, env),
                Value::Unknown(u) => match self.eval(&rhs, env)? {
                    Value::Bool(true) => Ok(Value::Bool(true)),
                    _ => Ok(Value::Unknown(u)),
                },
                _ => err("||: not a Boolean"),
            },
            K::Implication => match self.eval(&lhs, env)? {
                Value::Bool(false) => Ok(Value::Bool(true)),
                Value::Bool(true) => self.eval(&rhs, env),
                Value::Unknown(u) => Ok(Value::Unknown(u)),
                _ => err("->: not a Boolean"),
            },
            K::PipeRight => {
                let f = self.eval(&rhs, env)?;
                self.apply(f, Thunk::expr(lhs, env.clone()))
            }
            K::PipeLeft => {
                let f = self.eval(&lhs, env)?;
                self.apply(f, Thunk::expr(rhs, env.clone()))
            }
            _ => {
                let l = self.eval(&lhs, env)?;
                let r = self.eval(&rhs, env)?;
                self.binop(op, l, r)
            }
        }
    }

    pub(crate) fn binop(&self, op: ast::BinOpKind, l: Value, r: Value) -> Result<Value, EvalError> {
        use Value as V;
        use ast::BinOpKind as K;
        Ok(match (op, l, r) {
            (K::Equal, l, r) => match self.equal(&l, &r)? {
                Some(b) => V::Bool(b),
                None => unknown("a comparison"),
            },
            (K::NotEqual, l, r) => match self.equal(&l, &r)? {
                Some(b) => V::Bool(!b),
                None => unknown("a comparison"),
            },
            (_, V::Unknown(u), _) | (_, _, V::Unknown(u)) if op != K::Update => V::Unknown(u),
            (K::Concat, V::List(a), V::List(b)) => {
                V::List(Rc::new(a.iter().chain(b.iter()).cloned().collect()))
            }
            (K::Update, V::Attrs(a), V::Attrs(b)) => {
                let mut map = a.map.clone();
                for (k, t) in &b.map {
                    map.insert(k.clone(), t.clone());
                }
                V::Attrs(Rc::new(Attrs {
                    map,
                    open: b.open.clone().or_else(|| a.open.clone()),
                    lib: a.lib || b.lib,
                }))
            }
            (K::Update, V::Attrs(a), V::Unknown(u)) | (K::Update, V::Unknown(u), V::Attrs(a)) => {
                V::Attrs(Rc::new(Attrs {
                    map: a.map.clone(),
                    open: Some(u),
                    lib: a.lib,
                }))
            }
            (K::Update, V::Unknown(u), _) | (K::Update, _, V::Unknown(u)) => V::Unknown(u),
            (K::Add, V::Int(a), V::Int(b)) => V::Int(a.wrapping_add(b)),
            (K::Sub, V::Int(a), V::Int(b)) => V::Int(a.wrapping_sub(b)),
            (K::Mul, V::Int(a), V::Int(b)) => V::Int(a.wrapping_mul(b)),
            (K::Div, V::Int(_), V::Int(0)) => return err("division by zero"),
            (K::Div, V::Int(a), V::Int(b)) => V::Int(a / b),
            (K::Add | K::Sub | K::Mul | K::Div, a, b)
                if matches!(a, V::Int(_) | V::Float(_)) && matches!(b, V::Int(_) | V::Float(_)) =>
            {
                let (x, y) = (as_f64(&a), as_f64(&b));
                V::Float(match op {
                    K::Add => x + y,
                    K::Sub => x - y,
                    K::Mul => x * y,
                    _ => x / y,
                })
            }
            (K::Add, V::Path(p), r) => match self.coerce_str(&r)? {
                Some(s) => {
                    let s = s
                        .strip_prefix(SOURCE_PREFIX)
                        .map(str::to_string)
                        .unwrap_or(s);
                    match normalize(&format!("{p}/{s}")) {
                        Some(n) => V::Path(n.into()),
                        None => unknown("a path outside the repository"),
                    }
                }
                None => unknown("a path"),
            },
            (K::Add, l @ (V::Str(_) | V::Attrs(_)), r) => {
                match (self.coerce_str(&l)?, self.coerce_str(&r)?) {
                    (Some(a), Some(b)) => V::Str(format!("{a}{b}").into()),
                    _ => unknown("a string"),
                }
            }
            (K::Less | K::LessOrEq | K::More | K::MoreOrEq, a, b) => {
                let ord = match (&a, &b) {
                    (V::Str(x), V::Str(y)) => x.cmp(y),
                    (V::Int(x), V::Int(y)) => x.cmp(y),
                    _ => as_f64(&a)
                        .partial_cmp(&as_f64(&b))
                        .ok_or_else(|| EvalError::new("cannot compare"))?,
                };
                V::Bool(match op {
                    K::Less => ord.is_lt(),
                    K::LessOrEq => ord.is_le(),
                    K::More => ord.is_gt(),
                    _ => ord.is_ge(),
                })
            }
            (op, l, r) => {
                return err(format!(
                    "operator {op:?} on a {} and a {}",
                    type_name(&l),
                    type_name(&r)
                ));
            }
        })
    }

    /// Nix equality; `None` when an unknown value decides it.
    pub fn equal(&self, a: &Value, b: &Value) -> Result<Option<bool>, EvalError> {
        use Value as V;
        Ok(match (a, b) {
            (V::Unknown(_), _) | (_, V::Unknown(_)) => None,
            (V::Null, V::Null) => Some(true),
            (V::Bool(x), V::Bool(y)) => Some(x == y),
            (V::Int(x), V::Int(y)) => Some(x == y),
            (V::Int(_) | V::Float(_), V::Int(_) | V::Float(_)) => Some(as_f64(a) == as_f64(b)),
            (V::Str(x), V::Str(y)) => Some(x == y),
            (V::Path(x), V::Path(y)) => Some(x == y),
            (V::List(x), V::List(y)) => {
                if x.len() != y.len() {
                    return Ok(Some(false));
                }
                for (p, q) in x.iter().zip(y.iter()) {
                    match self.equal(&self.force(p)?, &self.force(q)?)? {
                        Some(true) => {}
                        other => return Ok(other),
                    }
                }
                Some(true)
            }
            (V::Attrs(x), V::Attrs(y)) => {
                if x.open.is_some() || y.open.is_some() {
                    return Ok(None);
                }
                if x.map.len() != y.map.len() || !x.map.keys().eq(y.map.keys()) {
                    return Ok(Some(false));
                }
                for (k, p) in &x.map {
                    match self.equal(&self.force(p)?, &self.force(&y.map[k])?)? {
                        Some(true) => {}
                        other => return Ok(other),
                    }
                }
                Some(true)
            }
            _ => Some(false),
        })
    }

    /// Applies a function value to an argument.
    pub fn apply(&self, f: Value, arg: Thunk) -> Result<Value, EvalError> {
        self.tick()?;
        match f {
            Value::Lambda(c) => self.call_lambda(&c, arg),
            Value::Prim(p) => {
                let mut args = p.args.clone();
                args.push(arg);
                if args.len() == p.arity {
                    (p.f)(self, &args)
                } else {
                    Ok(Value::Prim(Rc::new(Prim {
                        name: p.name,
                        arity: p.arity,
                        args,
                        f: p.f,
                    })))
                }
            }
            Value::Unknown(u) => Ok(Value::Unknown(u)),
            Value::Attrs(a) if a.map.contains_key("__functor") => {
                let functor = self.force(&a.map["__functor"])?;
                let partial = self.apply(functor, Thunk::value(Value::Attrs(a.clone())))?;
                self.apply(partial, arg)
            }
            Value::Attrs(a) if a.open.is_some() => Ok(unknown(a.open.as_ref().unwrap())),
            other => err(format!("attempt to call a {}", type_name(&other))),
        }
    }

    /// Applies a function to two arguments.
    pub fn apply2(&self, f: Value, a: Thunk, b: Thunk) -> Result<Value, EvalError> {
        let g = self.apply(f, a)?;
        self.apply(g, b)
    }

    fn call_lambda(&self, c: &Closure, arg: Thunk) -> Result<Value, EvalError> {
        let param = child(c.lambda.param())?;
        let body = child(c.lambda.body())?;
        let mut vars = HashMap::new();
        match param {
            ast::Param::IdentParam(p) => {
                let name = p.ident().map(|i| ident_text(&i)).unwrap_or_default();
                vars.insert(Rc::from(name.as_str()), arg);
            }
            ast::Param::Pattern(pat) => {
                let v = self.force(&arg)?;
                let (given, open) = match &v {
                    Value::Attrs(a) => (Some(a.clone()), a.open.clone()),
                    Value::Unknown(u) => (None, Some(u.clone())),
                    other => {
                        return err(format!(
                            "a function expecting a set was called with a {}",
                            type_name(other)
                        ));
                    }
                };
                if let Some(b) = pat.pat_bind().and_then(|b| b.ident()) {
                    vars.insert(Rc::from(ident_text(&b).as_str()), arg.clone());
                }
                let mut defaults = Vec::new();
                for entry in pat.pat_entries() {
                    let name = entry.ident().map(|i| ident_text(&i)).unwrap_or_default();
                    let found = given
                        .as_ref()
                        .and_then(|a| a.map.get(name.as_str()).cloned());
                    match (found, entry.default()) {
                        (Some(t), _) => {
                            vars.insert(Rc::from(name.as_str()), t);
                        }
                        (None, Some(d)) => defaults.push((name, d)),
                        (None, None) => match (&open, &given) {
                            (Some(o), _) => {
                                vars.insert(
                                    Rc::from(name.as_str()),
                                    Thunk::value(unknown(&format!("{o}.{name}"))),
                                );
                            }
                            (None, Some(a)) if a.lib => {
                                vars.insert(
                                    Rc::from(name.as_str()),
                                    Thunk::value(
                                        builtins::lib_fn(&name).unwrap_or_else(|| unknown(&name)),
                                    ),
                                );
                            }
                            _ => {
                                return err(format!(
                                    "function called without required argument '{name}'"
                                ));
                            }
                        },
                    }
                }
                if !defaults.is_empty() {
                    // Defaults see the other arguments: a recursive scope.
                    let env = Rc::new_cyclic(|weak: &std::rc::Weak<Env>| {
                        let mut vars = vars.clone();
                        for (name, d) in &defaults {
                            let w = weak.clone();
                            let d = d.clone();
                            vars.insert(
                                Rc::from(name.as_str()),
                                Thunk::native(move |ev| match w.upgrade() {
                                    Some(env) => ev.eval(&d, &env),
                                    None => err("scope gone"),
                                }),
                            );
                        }
                        Env {
                            vars,
                            with: None,
                            parent: Some(c.env.clone()),
                            dir: c.env.dir.clone(),
                            file: c.env.file.clone(),
                        }
                    });
                    return self.eval_keep(&body, env);
                }
            }
        }
        let env = Rc::new(Env {
            vars,
            with: None,
            parent: Some(c.env.clone()),
            dir: c.env.dir.clone(),
            file: c.env.file.clone(),
        });
        self.eval(&body, &env)
    }

    /// Evaluates in a scope that must outlive the call (cyclic scopes are
    /// held by their thunks through weak references: keep them alive by
    /// leaking one strong count per call; a discovery run is short).
    fn eval_keep(&self, body: &ast::Expr, env: Rc<Env>) -> Result<Value, EvalError> {
        let r = self.eval(body, &env);
        std::mem::forget(env.clone());
        r
    }

    /// A recursive scope (`let`, `rec { }`): bindings see each other.
    fn let_scope(&self, l: &ast::LetIn, env: &Rc<Env>) -> Result<Rc<Env>, EvalError> {
        let set = self.rec_bindings(l, env)?;
        Ok(set)
    }

    fn rec_scope(&self, a: &ast::AttrSet, env: &Rc<Env>) -> Result<(Rc<Env>, Value), EvalError> {
        let scope = self.rec_bindings(a, env)?;
        let v = self.attrset(a, &scope, env)?;
        Ok((scope, v))
    }

    /// Builds the recursive scope of a `let` or `rec` set: each top-level
    /// name bound to a thunk evaluated in the scope itself.
    fn rec_bindings(&self, node: &impl HasEntry, env: &Rc<Env>) -> Result<Rc<Env>, EvalError> {
        let scope = Rc::new(Env {
            vars: HashMap::new(),
            with: None,
            parent: Some(env.clone()),
            dir: env.dir.clone(),
            file: env.file.clone(),
        });
        // The set's values are evaluated in `scope`; `scope`'s variables are
        // the set's attributes, so build the set lazily in a thunk that the
        // variables select from.
        let holder: Rc<RefCell<Option<Rc<Env>>>> = Rc::new(RefCell::new(None));
        let mut vars = HashMap::new();
        let names = self.top_names(node, env)?;
        let set_thunk = {
            let holder = holder.clone();
            let node_syntax = node.syntax().clone();
            let outer = env.clone();
            Thunk::native(move |ev| {
                let scope = holder
                    .borrow()
                    .clone()
                    .ok_or_else(|| EvalError::new("scope not ready"))?;
                ev.attrset_entries(&node_syntax, &scope, &outer)
            })
        };
        for name in names {
            let st = set_thunk.clone();
            let n = name.clone();
            vars.insert(
                Rc::from(name.as_str()),
                Thunk::native(move |ev| match ev.force(&st)? {
                    Value::Attrs(a) => match a.map.get(n.as_str()) {
                        Some(t) => ev.force(t),
                        None => err(format!("undefined variable '{n}'")),
                    },
                    _ => err("not a set"),
                }),
            );
        }
        drop(scope);
        let scope = Rc::new(Env {
            vars,
            with: None,
            parent: Some(env.clone()),
            dir: env.dir.clone(),
            file: env.file.clone(),
        });
        *holder.borrow_mut() = Some(scope.clone());
        Ok(scope)
    }

    /// The names a set's entries bind at the top level (static names only;
    /// `${dynamic}` names cannot be referenced as variables).
    fn top_names(&self, node: &impl HasEntry, env: &Rc<Env>) -> Result<Vec<String>, EvalError> {
        let mut names = Vec::new();
        for entry in node.entries() {
            match entry {
                ast::Entry::AttrpathValue(apv) => {
                    if let Some(first) = apv.attrpath().and_then(|p| p.attrs().next())
                        && !matches!(first, ast::Attr::Dynamic(_))
                        && let Some(n) = self.attr_name(&first, env)?
                    {
                        names.push(n);
                    }
                }
                ast::Entry::Inherit(i) => {
                    for a in i.attrs() {
                        if let Some(n) = self.attr_name(&a, env)? {
                            names.push(n);
                        }
                    }
                }
            }
        }
        Ok(names)
    }

    fn attrset(
        &self,
        a: &ast::AttrSet,
        scope: &Rc<Env>,
        outer: &Rc<Env>,
    ) -> Result<Value, EvalError> {
        self.attrset_entries(a.syntax(), scope, outer)
    }

    /// Builds a set from entries. Values and `inherit (e)` sources are
    /// evaluated in `scope`; plain `inherit x` looks `x` up in `outer`.
    fn attrset_entries(
        &self,
        node: &rnix::SyntaxNode,
        scope: &Rc<Env>,
        outer: &Rc<Env>,
    ) -> Result<Value, EvalError> {
        let mut b = Builder::default();
        self.add_entries(&mut b, node, scope, outer)?;
        Ok(b.finish())
    }

    fn add_entries(
        &self,
        b: &mut Builder,
        node: &rnix::SyntaxNode,
        scope: &Rc<Env>,
        outer: &Rc<Env>,
    ) -> Result<(), EvalError> {
        for entry in node.children().filter_map(ast::Entry::cast) {
            match entry {
                ast::Entry::Inherit(i) => {
                    let from = i.from().and_then(|f| f.expr());
                    for a in i.attrs() {
                        let Some(name) = self.attr_name(&a, scope)? else {
                            continue;
                        };
                        let t = match &from {
                            Some(e) => {
                                let src = Thunk::expr(e.clone(), scope.clone());
                                let n = name.clone();
                                Thunk::native(move |ev| {
                                    let v = ev.force(&src)?;
                                    ev.select(&v, &n)?.ok_or_else(|| {
                                        EvalError::new(format!("attribute '{n}' missing"))
                                    })
                                })
                            }
                            None => match lookup(outer, &name) {
                                Some(t) => t,
                                None => {
                                    let n = name.clone();
                                    Thunk::native(move |_| err(format!("undefined variable '{n}'")))
                                }
                            },
                        };
                        b.set(&[name], BuildEntry::Value(t));
                    }
                }
                ast::Entry::AttrpathValue(apv) => {
                    let mut path = Vec::new();
                    let mut dynamic_unknown = false;
                    for a in apv
                        .attrpath()
                        .map(|p| p.attrs().collect::<Vec<_>>())
                        .unwrap_or_default()
                    {
                        match self.attr_name(&a, scope)? {
                            Some(n) => path.push(n),
                            None => {
                                dynamic_unknown = true;
                                break;
                            }
                        }
                    }
                    if dynamic_unknown {
                        b.open = true;
                        continue;
                    }
                    let value = child(apv.value())?;
                    // A literal non-rec set merges with other definitions of
                    // the same path (`a.b = 1; a = { c = 2; };`).
                    if let ast::Expr::AttrSet(inner) = &value
                        && inner.rec_token().is_none()
                    {
                        let sub = b.sub(&path);
                        self.add_entries(sub, inner.syntax(), scope, scope)?;
                    } else {
                        b.set(&path, BuildEntry::Value(Thunk::expr(value, scope.clone())));
                    }
                }
            }
        }
        Ok(())
    }

    /// Forces a value to a set (following `Unknown`): the set, or `None`.
    pub fn force_attrs(&self, v: &Value) -> Result<Option<Rc<Attrs>>, EvalError> {
        match v {
            Value::Attrs(a) => Ok(Some(a.clone())),
            Value::Unknown(_) => Ok(None),
            other => err(format!("expected a set, got a {}", type_name(other))),
        }
    }

    pub fn force_list(&self, v: &Value) -> Result<Option<Rc<Vec<Thunk>>>, EvalError> {
        match v {
            Value::List(l) => Ok(Some(l.clone())),
            Value::Unknown(_) => Ok(None),
            other => err(format!("expected a list, got a {}", type_name(other))),
        }
    }

    pub fn force_str(&self, v: &Value) -> Result<Option<String>, EvalError> {
        match v {
            Value::Str(s) => Ok(Some(s.to_string())),
            Value::Path(p) => Ok(Some(source_string(p))),
            Value::Unknown(_) => Ok(None),
            Value::Attrs(_) => self.coerce_str(v),
            other => err(format!("expected a string, got a {}", type_name(other))),
        }
    }

    /// A value naming a repository path (a path, a source string, a set
    /// with `outPath`): the repository-relative path.
    pub fn as_repo_path(&self, v: &Value) -> Result<Option<String>, EvalError> {
        match v {
            Value::Path(p) => Ok(Some(p.to_string())),
            Value::Str(s) => Ok(s
                .strip_prefix(SOURCE_PREFIX)
                .and_then(|r| normalize(r.trim_start_matches('/')))),
            Value::Attrs(a) => match a.map.get("outPath") {
                Some(t) => {
                    let o = self.force(t)?;
                    self.as_repo_path(&o)
                }
                None => Ok(None),
            },
            _ => Ok(None),
        }
    }
}

/// What each recorded read (see [`Eval::reads`]) sees in `snapshot`: two
/// snapshots with equal fingerprints evaluate the flake's outputs alike.
/// The address identifying an attribute set or function value.
fn value_address(v: &Value) -> Option<usize> {
    match v {
        Value::Attrs(a) => Some(Rc::as_ptr(a) as *const () as usize),
        Value::Lambda(c) => Some(Rc::as_ptr(c) as *const () as usize),
        _ => None,
    }
}

/// A digest of what the files and directories an evaluation read (its
/// `reads`) hold in `snapshot`: equal fingerprints, equal evaluation.
pub fn fingerprint(snapshot: &Snapshot, reads: &[String]) -> [u8; 32] {
    use sha2::Digest as _;
    let tree = Tree::new(snapshot);
    let mut h = sha2::Sha256::new();
    for r in reads {
        // Length-prefixed: no two sequences of prints hash alike.
        let print = read_print(snapshot, &tree, r);
        h.update((print.len() as u64).to_le_bytes());
        h.update(print.as_bytes());
    }
    h.finalize().into()
}

/// What one read saw: a path's kind, a directory's listing, the blob ids
/// below a directory, or a file's blob id.
fn read_print(snapshot: &Snapshot, tree: &Tree, r: &str) -> String {
    if let Some(p) = r.strip_prefix('?') {
        format!("{:?}", tree.kind(p))
    } else if let Some(d) = r.strip_suffix("/**") {
        let ids: Vec<String> = tree
            .under(d)
            .map(|p| {
                let id = snapshot.get(p.as_ref()).map(|e| e.id.to_string());
                format!("{}={id:?}", String::from_utf8_lossy(p))
            })
            .collect();
        ids.join(",")
    } else if let Some(d) = r.strip_suffix('/') {
        let entries: Vec<String> = tree
            .children(d)
            .into_keys()
            .map(|n| format!("{n}:{:?}", tree.kind(&join(d, &n))))
            .collect();
        entries.join(",")
    } else {
        format!("{:?}", snapshot.get(BStr::new(r)).map(|e| e.id))
    }
}

/// Nested attribute-set construction for `a.b.c = v;` entries.
#[derive(Default)]
struct Builder {
    entries: BTreeMap<String, BuildEntry>,
    open: bool,
}

enum BuildEntry {
    Value(Thunk),
    Nested(Builder),
}

impl Builder {
    fn sub(&mut self, path: &[String]) -> &mut Builder {
        let mut cur = self;
        for name in path {
            let e = cur
                .entries
                .entry(name.clone())
                .or_insert_with(|| BuildEntry::Nested(Builder::default()));
            if let BuildEntry::Value(_) = e {
                // `a = expr; a.b = ...;` is an error in nix; keep the
                // nested definitions (the names matter more).
                *e = BuildEntry::Nested(Builder::default());
            }
            let BuildEntry::Nested(b) = e else {
                unreachable!("just made nested")
            };
            cur = b;
        }
        cur
    }

    fn set(&mut self, path: &[String], entry: BuildEntry) {
        let Some((last, init)) = path.split_last() else {
            return;
        };
        let b = self.sub(init);
        match b.entries.get_mut(last) {
            Some(BuildEntry::Nested(_)) => {}
            _ => {
                b.entries.insert(last.clone(), entry);
            }
        }
    }

    fn finish(self) -> Value {
        let mut map = BTreeMap::new();
        for (k, e) in self.entries {
            let t = match e {
                BuildEntry::Value(t) => t,
                BuildEntry::Nested(b) => Thunk::value(b.finish()),
            };
            map.insert(Rc::from(k.as_str()), t);
        }
        Value::Attrs(Rc::new(Attrs {
            map,
            open: self.open.then(|| Rc::from("a dynamic attribute")),
            lib: false,
        }))
    }
}

fn lookup(env: &Rc<Env>, name: &str) -> Option<Thunk> {
    let mut cur = Some(env);
    while let Some(e) = cur {
        if let Some(t) = e.vars.get(name) {
            return Some(t.clone());
        }
        cur = e.parent.as_ref();
    }
    // `with` scopes, innermost first, only after every lexical binding.
    // Whether a namespace holds the name is only known by forcing it, so
    // the innermost `with` answers; a miss there is an error (outer `with`
    // scopes are rare in flakes, and an error is the honest answer).
    let mut cur = Some(env);
    while let Some(e) = cur {
        if let Some(ns) = &e.with {
            let ns = ns.clone();
            let n = name.to_string();
            return Some(Thunk::native(move |ev| {
                let v = ev.force(&ns)?;
                ev.select(&v, &n)?
                    .ok_or_else(|| EvalError::new(format!("undefined variable '{n}'")))
            }));
        }
        cur = e.parent.as_ref();
    }
    None
}

pub fn attrs(map: BTreeMap<Rc<str>, Thunk>) -> Value {
    Value::Attrs(Rc::new(Attrs {
        map,
        open: None,
        lib: false,
    }))
}

pub fn unknown(what: &str) -> Value {
    Value::Unknown(Rc::from(what))
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "Boolean",
        Value::Int(_) => "integer",
        Value::Float(_) => "float",
        Value::Str(_) => "string",
        Value::Path(_) => "path",
        Value::Attrs(_) => "set",
        Value::List(_) => "list",
        Value::Lambda(_) | Value::Prim(_) => "function",
        Value::Unknown(_) => "unknown value",
        Value::System(_) => "system configuration",
    }
}

fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        _ => f64::NAN,
    }
}

fn child<T>(o: Option<T>) -> Result<T, EvalError> {
    o.ok_or_else(|| EvalError::new("incomplete expression"))
}

fn ident_text(i: &ast::Ident) -> String {
    i.syntax().text().to_string()
}

pub fn source_string(p: &str) -> String {
    if p.is_empty() {
        SOURCE_PREFIX.to_string()
    } else {
        format!("{SOURCE_PREFIX}/{p}")
    }
}

pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn parent_dir(file: &str) -> String {
    file.rsplit_once('/').map_or("", |(d, _)| d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Evaluates `src` (no files needed) and renders the result deeply, as
    /// `nix eval` would print it, with unknowns as `<unknown: …>`.
    fn eval(src: &str) -> String {
        // The stack discovery gives the evaluator (hosts.rs).
        let src = src.to_string();
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(move || eval_here(&src))
            .unwrap()
            .join()
            .unwrap()
    }

    fn eval_here(src: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("git")
            .args(["init", "-q"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success());
        let repo = crate::git::Repo::discover(dir.path()).unwrap();
        let snapshot = repo.snapshot(crate::git::SnapshotSpec::Empty).unwrap();
        let ev = Eval::new(&snapshot);
        let root = rnix::Root::parse(src).tree();
        let env = Rc::new(Env {
            vars: HashMap::new(),
            with: None,
            parent: Some(ev.root_env.clone()),
            dir: Rc::from(""),
            file: Rc::from("(test)"),
        });
        match ev.eval(&root.expr().unwrap(), &env) {
            Ok(v) => render(&ev, &v, 0),
            Err(e) => format!("error: {}", e.message),
        }
    }

    fn render(ev: &Eval, v: &Value, depth: usize) -> String {
        if depth > 8 {
            return "…".into();
        }
        let force = |t: &Thunk| match ev.force(t) {
            Ok(v) => render(ev, &v, depth + 1),
            Err(e) => format!("error: {}", e.message),
        };
        match v {
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Str(s) => format!("{s:?}"),
            Value::Path(p) => format!("./{p}"),
            Value::List(l) => format!(
                "[ {}]",
                l.iter().map(|t| force(t) + " ").collect::<String>()
            ),
            Value::Attrs(a) => format!(
                "{{ {}}}",
                a.map
                    .iter()
                    .map(|(k, t)| format!("{k} = {}; ", force(t)))
                    .collect::<String>()
            ),
            Value::Unknown(u) => format!("<unknown: {u}>"),
            Value::System(_) => "<system>".into(),
            Value::Lambda(_) | Value::Prim(_) => "<lambda>".into(),
        }
    }

    #[test]
    fn let_rec_inherit_and_with() {
        assert_eq!(eval("let a = 1; b = a + 1; in b"), "2");
        assert_eq!(eval("rec { a = 1; b = a + 1; }.b"), "2");
        assert_eq!(
            eval("let x = { y = 3; }; in { inherit (x) y; }"),
            "{ y = 3; }"
        );
        assert_eq!(eval("let y = 4; in { inherit y; }"), "{ y = 4; }");
        assert_eq!(eval("with { a = 5; }; a"), "5");
        // A lexical binding wins over `with`.
        assert_eq!(eval("let a = 1; in with { a = 2; }; a"), "1");
        assert_eq!(eval("{ a.b = 1; a.c = 2; }"), "{ a = { b = 1; c = 2; }; }");
        assert_eq!(eval("let s = \"k\"; in { ${s} = 1; }"), "{ k = 1; }");
    }

    #[test]
    fn functions_patterns_and_defaults() {
        assert_eq!(eval("({ a, b ? a + 1, ... }: b) { a = 1; }"), "2");
        assert_eq!(eval("(args@{ a, ... }: args.z) { a = 1; z = 9; }"), "9");
        assert!(
            eval("({ a }: a) { }").starts_with("error: function called without required argument")
        );
        assert_eq!(eval("(x: y: x) 1 2"), "1");
    }

    #[test]
    fn builtins_and_lib_as_host_lists_use_them() {
        assert_eq!(
            eval("builtins.listToAttrs (map (n: { name = n; value = 1; }) [ \"a\" \"b\" ])"),
            "{ a = 1; b = 1; }"
        );
        assert_eq!(
            eval("let lib = (x: x).lib or { }; in builtins.filter (n: n != \"b\") [ \"a\" \"b\" ]"),
            "[ \"a\" ]"
        );
        assert_eq!(
            eval(
                "let l = (import <nixpkgs> { }).lib; in builtins.attrNames (l.genAttrs [ \"x\" \"y\" ] (n: n))"
            ),
            "[ \"x\" \"y\" ]"
        );
        assert_eq!(
            eval("builtins.replaceStrings [ \"a\" ] [ \"b\" ] \"banana\""),
            "\"bbnbnb\""
        );
        assert_eq!(eval("builtins.match \"h(.*)\" \"host\""), "[ \"ost\" ]");
        assert_eq!(eval("builtins.match \"x\" \"host\""), "null");
        assert_eq!(eval("builtins.foldl' (a: b: a + b) 0 [ 1 2 3 ]"), "6");
        assert_eq!(
            eval("builtins.fromTOML \"[a]\\nx = 1\""),
            "{ a = { x = 1; }; }"
        );
    }

    #[test]
    fn laziness_keeps_names_without_values() {
        // Names of a mapped set never force its values (nor the mapper).
        assert_eq!(
            eval("builtins.attrNames (builtins.mapAttrs (n: v: throw \"no\") { a = 1; b = 2; })"),
            "[ \"a\" \"b\" ]"
        );
        assert_eq!(eval("{ a = throw \"x\"; } ? a"), "true");
    }

    #[test]
    fn unknowns_absorb_and_never_guess() {
        assert_eq!(
            eval("(import <nixpkgs> { }).x.y"),
            "<unknown: import <nixpkgs>.x.y>"
        );
        assert_eq!(
            eval("if builtins.currentSystem == \"x\" then 1 else 2"),
            "<unknown: a comparison>"
        );
        assert_eq!(
            eval("builtins.attrNames ({ a = 1; } // (import <nixpkgs> { }))"),
            "<unknown: attrNames of an incompletely known set>"
        );
    }

    #[test]
    fn runaway_recursion_is_an_error_not_a_crash() {
        assert!(eval("let f = x: f x; in f 1").starts_with("error: evaluation"));
        assert!(eval("let a = a; in a").contains("infinite recursion"));
    }
}
