//! The drift view as HTML: the live page of the admin port (`GET /`,
//! `/ui`) and the file `driftline report --out` writes.
//!
//! Guarantees: both pages are built from the same renderer (`view.js`)
//! and style (`view.css`), compiled into the binary; neither loads
//! anything from elsewhere (no CDN, script, style sheet or font), so a
//! report opens offline and the live page needs no build step. The live
//! page draws only what `/v1/drift`, `/v1/models` and `/metrics` answer;
//! the report draws only the [`DriftView`] it embeds.
//!
//! [`DriftView`]: crate::drift::monitor::DriftView

const VIEW_JS: &str = include_str!("view.js");
const VIEW_CSS: &str = include_str!("view.css");
const LIVE_HTML: &str = include_str!("live.html");
const REPORT_HTML: &str = include_str!("report.html");

/// The live page.
pub fn live_page() -> String {
    LIVE_HTML
        .replace("{{VIEW_CSS}}", VIEW_CSS)
        .replace("{{VIEW_JS}}", VIEW_JS)
}

/// A self-contained report page drawing `view_json` (a serialised
/// [`DriftView`](crate::drift::monitor::DriftView)); `title` names the data
/// and the model.
pub fn report_page(view_json: &str, title: &str) -> String {
    // The JSON sits in a <script> element: `</` would end it early, and
    // `<!--` would open a comment; `<\/` and `<\!` are the same JSON.
    let json = view_json
        .replace("</", "<\\/")
        .replace("<!--", "<\\u0021--");
    // Replaced last, so that text inside the JSON is never taken for a
    // placeholder.
    REPORT_HTML
        .replace("{{TITLE}}", &escape_html(title))
        .replace("{{VIEW_CSS}}", VIEW_CSS)
        .replace("{{VIEW_JS}}", VIEW_JS)
        .replace("{{VIEW_JSON}}", &json)
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_self_contained() {
        let report = report_page("{\"a\":\"</script><!--\"}", "x <b>");
        for page in [live_page(), report] {
            assert!(!page.contains("{{"), "a placeholder is left");
            for external in ["src=\"http", "href=\"http", "@import", "url(http", "<link"] {
                assert!(!page.contains(external), "{external} in the page");
            }
            assert!(page.contains("const DriftView"));
        }
    }

    #[test]
    fn embedded_json_cannot_end_its_script_element() {
        let page = report_page("{\"a\":\"</script><!--\"}", "x <b>");
        assert!(page.contains(r#"{"a":"<\/script><\u0021--"}"#), "{page}");
        assert!(page.contains("x &lt;b&gt;"));
        let script_ends = page.matches("</script>").count();
        assert_eq!(script_ends, 2, "only the page's own scripts end");
    }
}
