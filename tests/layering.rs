//! The declared layering, checked: every `crate::…` path in `src/` that goes from
//! one top-level module to another must point to a lower layer. The README's
//! diagram and `src/lib.rs` state the same order, word for word.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Lowest first. A module may use modules of lower layers only, never its own
/// layer or a higher one.
const LAYERS: &[&[&str]] = &[
    &["config", "model", "signal", "http"],
    &["collect", "ship", "ledger"],
    &["store", "revenue", "sim"],
    &["aggregate"],
    &["agent", "web", "alert"],
    &["demo"],
    &["cli"],
];

/// The diagram as the README and `lib.rs` write it.
const DIAGRAM: &str =
    "config, model, signal, http  <-  collect, ship, ledger  <-  store, revenue, sim  <-  aggregate  <-  agent, web, alert  <-  demo  <-  cli";

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules named by `crate::…` paths in `code`, comments skipped:
/// `crate::store::Store`, `use crate::{model, revenue::Market}`.
fn crate_edges(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            // `$crate::` in macros and identifiers ending in `crate` are not paths.
            let before = rest[..i].chars().last();
            rest = &rest[i + "crate::".len()..];
            if before.is_some_and(|c| c == '$' || c == '_' || c.is_ascii_alphanumeric()) {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // Top-level names of the group, up to its closing brace.
                let mut depth = 0;
                let mut item = String::new();
                let mut at_start = true;
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => at_start = true,
                        c if at_start && depth == 0 && (c.is_ascii_alphanumeric() || c == '_') => item.push(c),
                        _ if !item.is_empty() => {
                            out.insert(std::mem::take(&mut item));
                            at_start = false;
                        }
                        _ => {}
                    }
                }
                if !item.is_empty() {
                    out.insert(item);
                }
            } else {
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn dependencies_point_down_the_declared_layers() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".rs").to_string())
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut violations = Vec::new();
    let mut undeclared = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().to_string();
        let from = first.strip_suffix(".rs").unwrap_or(&first).to_string();
        if from == "lib" || from == "main" {
            continue;
        }
        let Some(from_layer) = layer_of(&from) else {
            undeclared.insert(from.clone());
            continue;
        };
        let code = std::fs::read_to_string(file).unwrap();
        for to in crate_edges(&code) {
            if to == from {
                continue;
            }
            // `#[macro_export]` macros live at the crate root but are not modules.
            if !modules.contains(&to) {
                continue;
            }
            match layer_of(&to) {
                Some(to_layer) if to_layer < from_layer => {}
                Some(_) => violations.push(format!("{}: {from} uses {to}", rel.display())),
                None => {
                    undeclared.insert(to);
                }
            }
        }
    }
    assert!(undeclared.is_empty(), "modules missing from LAYERS (place them in the diagram): {undeclared:?}");
    assert!(violations.is_empty(), "dependencies against the layering {DIAGRAM:?}:\n{}", violations.join("\n"));
}

#[test]
fn the_readme_and_lib_rs_state_the_same_layering() {
    let expected: String = LAYERS.iter().map(|l| l.join(", ")).collect::<Vec<_>>().join("  <-  ");
    assert_eq!(expected, DIAGRAM);
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.contains(DIAGRAM), "README.md must show the layering as:\n{DIAGRAM}");
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    assert!(lib.contains(&format!("//! {DIAGRAM}")), "src/lib.rs must state the layering as:\n//! {DIAGRAM}");
}

#[test]
fn edges_are_read_from_paths_groups_and_not_comments() {
    let code = "use crate::model::Point;\nuse crate::{store::Store, revenue::{self, Market}, signal};\n\
                // crate::web is only mentioned\nlet x = crate::aggregate::rfc3339(0); $crate::ship::x!();\n";
    let got: Vec<String> = crate_edges(code).into_iter().collect();
    assert_eq!(got, ["aggregate", "model", "revenue", "signal", "store"]);
}
