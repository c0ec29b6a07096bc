//! Aligned text tables (and Markdown ones) for the commands that print
//! figures: `report`, `rules backtest`.

/// `rows` under `header`, columns padded to their widest cell; Markdown
/// with a rule under the header when `markdown`. No rows print `(none)`.
pub(super) fn aligned(header: &[&str], rows: &[Vec<String>], markdown: bool) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .chain([header[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        if markdown {
            format!("| {} |\n", padded.join(" | "))
        } else {
            format!("{}\n", padded.join("  ").trim_end())
        }
    };
    let mut out = line(&header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>());
    if markdown {
        out.push_str(&line(
            &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
        ));
    }
    if rows.is_empty() {
        out.push_str(if markdown { "\n(none)\n" } else { "(none)\n" });
    }
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// Seconds as `1h 4m`, or `-` when there is no figure.
pub(super) fn seconds(s: Option<f64>) -> String {
    s.map_or("-".to_owned(), |s| {
        humantime::format_duration(std::time::Duration::from_secs(s.max(0.0).round() as u64))
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_on_the_widest_cell() {
        let rows = vec![
            vec!["checkout".to_owned(), "3".to_owned()],
            vec!["api".to_owned(), "12".to_owned()],
        ];
        assert_eq!(
            aligned(&["rule", "n"], &rows, false),
            "rule      n\ncheckout  3\napi       12\n"
        );
        assert_eq!(
            aligned(&["rule", "n"], &rows[..1], true),
            "| rule     | n |\n| -------- | - |\n| checkout | 3 |\n"
        );
        assert_eq!(aligned(&["rule"], &[], false), "rule\n(none)\n");
    }
}
