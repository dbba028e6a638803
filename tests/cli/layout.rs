//! The layout's import rules, checked on the source (`src/lib.rs`, "Layout"):
//!
//! - drift, score, features, enrich and source import no Kafka, HTTP or
//!   telemetry types (nor the modules that hold them: consumer, serve,
//!   sink, admin, telemetry);
//! - drift imports nothing from score, enrich, the pipeline, the app, or
//!   the feature store, snapshots and aggregates: it sees numbers, not
//!   models;
//! - telemetry imports nothing from the crate.
//!
//! Every path in a file is read (`use` items and paths in code alike), with
//! comments and literals left out and `super::`/`self::` resolved against
//! the file's module. `DRIFTLINE_LAYOUT_SRC` points the check at another
//! `src/` (an older checkout, to see it fail).

use std::path::{Path, PathBuf};

/// One rule: files of `modules` must not use paths under `forbidden`.
struct Rule {
    modules: &'static [&'static str],
    forbidden: &'static [&'static str],
    why: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        modules: &["drift", "score", "features", "enrich", "source"],
        forbidden: &[
            "rdkafka",
            "axum",
            "http",
            "hyper",
            "metrics",
            "metrics_exporter_prometheus",
            "crate::telemetry",
            "crate::consumer",
            "crate::serve",
            "crate::sink",
            "crate::admin",
        ],
        why: "stages import no Kafka, HTTP or telemetry types",
    },
    Rule {
        modules: &["drift"],
        forbidden: &[
            "crate::score",
            "crate::enrich",
            "crate::pipeline",
            "crate::app",
            "crate::features::store",
            "crate::features::snapshot",
            "crate::features::aggregates",
        ],
        why: "drift sees numbers, not models",
    },
    Rule {
        modules: &["telemetry"],
        forbidden: &["crate"],
        why: "telemetry is a leaf",
    },
];

/// Every rule broken under `src`: `file: path (why)`.
fn violations(src: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for rule in RULES {
        for module in rule.modules {
            for file in rust_files(src, module) {
                let text = std::fs::read_to_string(&file)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                let module_path = module_path(src, &file);
                for path in paths(&text, &module_path) {
                    let own = path.starts_with(&format!("crate::{module}"));
                    let hit = rule.forbidden.iter().any(|f| {
                        if *f == "crate" {
                            path.starts_with("crate::") && !own
                        } else {
                            path == *f || path.starts_with(&format!("{f}::"))
                        }
                    });
                    if hit {
                        let shown = file.strip_prefix(src).unwrap_or(&file).display();
                        found.push(format!("src/{shown}: {path} ({})", rule.why));
                    }
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// `src/<module>.rs` and every `.rs` under `src/<module>/`.
fn rust_files(src: &Path, module: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let single = src.join(format!("{module}.rs"));
    if single.is_file() {
        files.push(single);
    }
    let mut dirs = vec![src.join(module)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The module a file defines: `src/drift/monitor/plan.rs` is
/// `crate::drift::monitor::plan`, `src/drift/monitor/mod.rs` is
/// `crate::drift::monitor`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut segments: Vec<String> = std::iter::once("crate".to_string())
        .chain(relative.iter().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    if segments.last().is_some_and(|s| s == "mod" || s == "lib") {
        segments.pop();
    }
    segments
}

/// The text with comments, string, byte-string and char literals blanked
/// out (lifetimes kept), so that only code is left.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&chars, i) {
            // Raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('a', '\n', '\u{1F600}'), or a lifetime ('a).
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Star,
    Other,
}

fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
            continue;
        }
        out.push(match c {
            ':' if chars.get(i + 1) == Some(&':') => {
                i += 1;
                Token::PathSep
            }
            '{' => Token::Open,
            '}' => Token::Close,
            ',' => Token::Comma,
            '*' => Token::Star,
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            _ => Token::Other,
        });
        i += 1;
    }
    out
}

/// Every path of two or more segments in `text`, `self` and `super`
/// resolved against `module` (the file's module path).
fn paths(text: &str, module: &[String]) -> Vec<String> {
    let tokens = tokens(&code_only(text));
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let starts = matches!(tokens[i], Token::Ident(_))
            && tokens.get(i + 1) == Some(&Token::PathSep)
            && (i == 0 || tokens[i - 1] != Token::PathSep);
        if starts {
            let mut prefix = Vec::new();
            i = path(&tokens, i, &mut prefix, &mut out);
        } else {
            i += 1;
        }
    }
    out.into_iter()
        .map(|segments| resolve(segments, module))
        .filter(|p| p.contains("::"))
        .collect()
}

/// Reads the path starting at `tokens[i]` (after `prefix`), pushing every
/// full path it names (a `{...}` group names several); returns the index
/// after it.
fn path(
    tokens: &[Token],
    mut i: usize,
    prefix: &mut Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    let depth = prefix.len();
    loop {
        match tokens.get(i) {
            Some(Token::Ident(name)) => {
                prefix.push(name.clone());
                i += 1;
            }
            Some(Token::Open) => {
                i += 1;
                loop {
                    match tokens.get(i) {
                        Some(Token::Close) => {
                            i += 1;
                            break;
                        }
                        Some(Token::Comma) => i += 1,
                        Some(_) => {
                            let mut inner = prefix.clone();
                            i = path(tokens, i, &mut inner, out);
                        }
                        None => break,
                    }
                }
                prefix.truncate(depth);
                return i;
            }
            Some(Token::Star) => {
                i += 1;
                break;
            }
            _ => break,
        }
        if tokens.get(i) == Some(&Token::PathSep) {
            i += 1;
        } else {
            break;
        }
    }
    out.push(prefix.clone());
    prefix.truncate(depth);
    i
}

/// `self::` and `super::` made absolute; other paths as written.
fn resolve(segments: Vec<String>, module: &[String]) -> String {
    let mut base: Vec<String> = Vec::new();
    let mut rest = segments.as_slice();
    match rest.first().map(String::as_str) {
        Some("self") => {
            base = module.to_vec();
            rest = &rest[1..];
        }
        Some("super") => {
            base = module.to_vec();
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        _ => {}
    }
    base.extend(rest.iter().cloned());
    base.join("::")
}

#[test]
fn stages_import_only_what_the_layout_allows() {
    let src = std::env::var_os("DRIFTLINE_LAYOUT_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(src.join("lib.rs").is_file(), "{}: no lib.rs", src.display());
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "{} import(s) against the layout in {}:\n  {}",
        found.len(),
        src.display(),
        found.join("\n  ")
    );
}

/// The checker itself finds what it must, and nothing in comments or text.
#[test]
fn the_checker_reads_paths_as_rust_does() {
    let module: Vec<String> = ["crate", "drift", "monitor", "plan"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let text = r####"
        //! Mentions crate::score::Model in a doc comment.
        use crate::{event::now_ms, score::{manifest::InputKind, Model}};
        use super::super::labels::LabelJoin;
        use rdkafka::consumer::Consumer as _;
        /* crate::serve::start in a block comment */
        fn f<'a>(x: &'a str) -> char {
            let _ = "crate::app::build in a string";
            let _ = r#"axum::Router in a raw string"#;
            let _ = crate::features::store::FeatureStore::new;
            'x'
        }
        pub(crate) fn g() {}
    "####;
    let found = paths(text, &module);
    for want in [
        "crate::event::now_ms",
        "crate::score::manifest::InputKind",
        "crate::score::Model",
        "crate::drift::labels::LabelJoin",
        "rdkafka::consumer::Consumer",
        "crate::features::store::FeatureStore::new",
    ] {
        assert!(found.iter().any(|p| p == want), "{want} not in {found:?}");
    }
    for unwanted in ["crate::serve", "crate::app", "axum"] {
        assert!(
            !found.iter().any(|p| p.starts_with(unwanted)),
            "{unwanted} found in {found:?}"
        );
    }
}

/// A tree that breaks each rule is reported, file by file.
#[test]
fn each_rule_can_fail() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |file: &str, text: &str| {
        let path = src.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "lib.rs",
        "pub mod drift; pub mod telemetry; pub mod source;",
    );
    write(
        "drift/mod.rs",
        "use crate::score::Manifest;\nuse super::stats;",
    );
    write(
        "source/decode.rs",
        "use rdkafka::Message;\nfn f() { metrics::counter!(\"x\"); }",
    );
    write(
        "telemetry/mod.rs",
        "use crate::event::RejectReason;\nuse self::inner::X;",
    );
    let found = violations(src);
    assert_eq!(
        found,
        [
            "src/drift/mod.rs: crate::score::Manifest (drift sees numbers, not models)",
            "src/source/decode.rs: metrics::counter (stages import no Kafka, HTTP or telemetry types)",
            "src/source/decode.rs: rdkafka::Message (stages import no Kafka, HTTP or telemetry types)",
            "src/telemetry/mod.rs: crate::event::RejectReason (telemetry is a leaf)",
        ]
    );
}
