//! The draft as Markdown, and as one self-contained HTML page. Everything
//! written is a fact from klaxon's data or a prompt for the team; where data
//! is missing the draft says so.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use super::Draft;

/// The sections the team writes, each with its prompt, in blameless wording.
const SECTIONS: &[(&str, &str)] = &[
    (
        "Summary",
        "What happened, in two or three sentences, for someone who was not there.",
    ),
    (
        "Impact",
        "Who and what was affected, how much and for how long. The impact window above is the rule's view; say where users saw more or less.",
    ),
    (
        "Contributing factors",
        "The conditions that together made this possible: systems, signals, processes and circumstances, not people.",
    ),
    (
        "What mitigated it",
        "What stopped the impact, and what told the responders it would.",
    ),
    ("What went well", "Tools, signals and habits worth keeping."),
    (
        "What went badly",
        "Where the system or the process made the response harder.",
    ),
    (
        "Where we got lucky",
        "What helped this time that we cannot count on next time.",
    ),
];

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `1h 4m 10s`, or `0s`; negative spans (clocks apart) show as such.
fn span(d: Duration) -> String {
    let negative = d < Duration::zero();
    let s = d.num_seconds().unsigned_abs();
    let text = humantime::format_duration(std::time::Duration::from_secs(s)).to_string();
    if negative { format!("-{text}") } else { text }
}

/// Text from outside (alerts, people, files) made inert in Markdown: the
/// characters that open links, images, autolinks and HTML, end a table cell
/// or escape the others are escaped, and line breaks become spaces, so a
/// summary is never a link, an image, HTML or a cell's end, in the Markdown
/// or in the HTML made from it. (Emphasis characters are left alone: the
/// draft stays readable as plain text, and emphasis is harmless.)
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' | '[' | ']' | '<' | '>' | '|' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// The draft in Markdown; `chart` is the file name the SVG is saved under,
/// beside the Markdown, when there is one.
pub fn markdown(draft: &Draft, chart: Option<&str>) -> String {
    let f = &draft.facts;
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# Postmortem draft: {}\n", text(&f.summary));
    let _ = writeln!(
        w,
        "> Drafted by klaxon from its own data: the incident's timeline in the lake's \
         `incidents` table and the rule's points in `metrics`. The facts below are data; \
         the sections after them are for the team to write, blamelessly: about systems \
         and conditions, not people.\n"
    );
    let status = match &f.resolved {
        Some(_) => "resolved".to_owned(),
        None => format!(
            "still open (as of the lake's last entry, {})",
            at(f.timeline.last().map_or(f.opened_at, |r| r.at))
        ),
    };
    // Without a first breach the window starts at the trigger, and says so.
    let (start, from_trigger) = match draft.first_breach() {
        Some(b) => (b, ""),
        None => (f.opened_at, ", from the trigger: no first breach was found"),
    };
    let impact = match &f.resolved {
        Some(r) => format!(
            "{} → {} ({}{from_trigger})",
            at(start),
            at(r.at),
            span(r.at - start)
        ),
        None => format!("{} → still open{from_trigger}", at(start)),
    };
    let detect = match draft.first_breach() {
        Some(b) => format!(
            "{} (first breaching window ended {}, triggered {})",
            span(f.opened_at - b),
            at(b),
            at(f.opened_at)
        ),
        None => format!("unknown: {}", draft.no_breach_reason()),
    };
    let acknowledged = match &f.acknowledged {
        Some(a) => format!("{} by {}", span(a.at - f.opened_at), a.by),
        None => "never acknowledged".to_owned(),
    };
    let resolved = match &f.resolved {
        Some(r) => format!("{} by {}", span(r.at - f.opened_at), r.by),
        None => "not resolved".to_owned(),
    };
    let paged = if f.paged.is_empty() {
        "nobody".to_owned()
    } else {
        f.paged
            .iter()
            .map(|n| format!("{} by {} at {} ({})", n.user, n.channel, at(n.at), n.result))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let labels = f
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = [
        ("Incident", format!("{} (dedup_key {})", f.id, f.dedup_key)),
        (
            "Rule",
            f.rule
                .as_deref()
                .map_or("none (not opened by a rule)".to_owned(), |r| r.to_owned()),
        ),
        ("Severity", f.severity.clone()),
        ("Status", status),
        ("Impact window", impact),
        ("Time to detect", detect),
        ("Time to acknowledge", acknowledged),
        ("Time to resolve", resolved),
        ("Paged", paged),
        (
            "Labels",
            if labels.is_empty() {
                "none".into()
            } else {
                labels
            },
        ),
    ];
    let _ = writeln!(w, "| | |\n|---|---|");
    for (name, value) in rows {
        let _ = writeln!(w, "| {name} | {} |", text(&value));
    }

    let _ = writeln!(w, "\n## Timeline (UTC)\n");
    let _ = writeln!(w, "| time | event | detail |\n|---|---|---|");
    let mut lines: Vec<(DateTime<Utc>, String, String)> = f
        .timeline
        .iter()
        .map(|r| (r.at, r.event.clone(), r.detail.clone()))
        .collect();
    if let (Some(b), Some(view)) = (draft.first_breach(), &draft.rule_view) {
        let value = view
            .values
            .iter()
            .find(|(t, _)| *t == b)
            .and_then(|(_, v)| *v)
            .map_or(String::new(), |v| format!(": value {v}"));
        lines.push((
            b,
            "first breach".to_owned(),
            format!(
                "rule {}: the first window past its threshold ends{value}",
                view.rule
            ),
        ));
    }
    // Stable: the breach goes before entries of the same second.
    lines.sort_by_key(|(t, event, _)| (*t, event != "first breach"));
    for (t, event, detail) in lines {
        let _ = writeln!(w, "| {} | {} | {} |", at(t), text(&event), text(&detail));
    }

    let _ = writeln!(w, "\n## The rule's value\n");
    match (chart, &draft.rule_view) {
        (Some(file), Some(view)) => {
            let _ = writeln!(
                w,
                "![{} around the incident: value per window, thresholds, and the first breach, trigger, acknowledgement and resolve]({file})",
                text(&view.rule)
            );
        }
        _ => {
            let _ = writeln!(w, "No chart: {}.", text(&draft.no_chart_reason()));
        }
    }
    if !draft.notes.is_empty() {
        let _ = writeln!(w, "\n## Notes on the data\n");
        for note in &draft.notes {
            let _ = writeln!(w, "- {}", text(note));
        }
    }

    let _ = writeln!(w, "\n---\n\n*For the team to write.*");
    for (title, prompt) in SECTIONS {
        let _ = writeln!(w, "\n## {title}\n\n_{prompt}_");
    }
    let _ = writeln!(w, "\n## Action items\n");
    let _ = writeln!(
        w,
        "| action | owner | due date | tracking |\n|---|---|---|---|\n| | | | |"
    );
    out
}

/// The draft as one HTML page, the chart inline. Text from alerts and
/// people (summaries, labels, details) is shown as text, never as HTML.
pub fn html(draft: &Draft) -> String {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd, html::push_html};
    const CHART_REF: &str = "klaxon-chart.svg";
    let markdown = markdown(draft, draft.chart.as_ref().map(|_| CHART_REF));
    // Outside text is escaped already (`text`); as a second guard, raw HTML
    // is shown as text and no link or image but the chart is kept, so the
    // page is self-contained and carries no script URL.
    let mut kept: Vec<bool> = Vec::new();
    let events =
        Parser::new_ext(&markdown, Options::ENABLE_TABLES).filter_map(|event| match event {
            Event::Html(raw) | Event::InlineHtml(raw) => Some(Event::Text(raw)),
            Event::Start(Tag::Image { ref dest_url, .. }) if dest_url.as_ref() == CHART_REF => {
                kept.push(true);
                Some(event)
            }
            Event::Start(Tag::Link { .. } | Tag::Image { .. }) => {
                kept.push(false);
                None
            }
            Event::End(TagEnd::Link | TagEnd::Image) => {
                kept.pop().unwrap_or(false).then_some(event)
            }
            other => Some(other),
        });
    let mut body = String::new();
    push_html(&mut body, events);
    if let Some(svg) = &draft.chart {
        // The image the Markdown links becomes the SVG itself.
        let image = body.find(&format!("<img src=\"{CHART_REF}\""));
        if let Some(start) = image
            && let Some(len) = body[start..].find("/>")
        {
            body.replace_range(start..start + len + 2, svg_body(svg));
        }
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Postmortem draft: {}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(&draft.facts.summary)
    )
}

/// The SVG without its XML declaration, for inlining.
fn svg_body(svg: &str) -> &str {
    svg.find("<svg").map_or(svg, |i| &svg[i..])
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body { font-family: sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
td, th { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
blockquote { color: #555; border-left: 4px solid #ddd; margin: 1rem 0; padding: 0 1rem; }
em { color: #666; }
";
