//! Prometheus text exposition helpers shared by every `/metrics` page.

/// A label value escaped for the text format (`\\`, `\"`, `\n`).
pub fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
