//! Reading a figure's SVG back as a reader sees it: its words and the tick
//! labels of each axis, for snapshots that stay readable (no pixel
//! coordinates) and for checks that hold on every figure.

#![allow(dead_code)]

/// One element of the SVG, as far as these checks need it.
#[derive(Debug, Clone, PartialEq)]
enum Element {
    /// A text, its anchor (x, y) and its words.
    Text(f64, f64, String),
    /// A polyline's points.
    Line(Vec<(f64, f64)>),
    Other,
}

fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = start + tag[start..].find('"')?;
    Some(&tag[start..end])
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn elements(svg: &str) -> Vec<Element> {
    let mut out = Vec::new();
    for piece in svg.split('<').skip(1) {
        if piece.starts_with('/') {
            continue;
        }
        let (tag, content) = piece.split_once('>').unwrap_or((piece, ""));
        if tag.starts_with("text") {
            let at = |name: &str| attribute(tag, name).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
            out.push(Element::Text(at("x"), at("y"), unescape(content.trim())));
        } else if tag.starts_with("polyline") {
            let points = attribute(tag, "points")
                .unwrap_or("")
                .split_whitespace()
                .filter_map(|p| p.split_once(','))
                .filter_map(|(x, y)| Some((x.parse().ok()?, y.parse().ok()?)))
                .collect();
            out.push(Element::Line(points));
        } else {
            out.push(Element::Other);
        }
    }
    out
}

/// An axis's tick labels: `x` (a horizontal axis, vertical tick marks) or
/// `y`, and the labels in the order drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticks {
    pub axis: char,
    pub labels: Vec<String>,
}

/// The axis of a tick mark drawn right after a label at (`x`, `y`): a
/// polyline of two points at most 10 px apart, level with a y-axis label
/// and to its right, or plumb with an x-axis label.
fn tick_mark(x: f64, y: f64, element: Option<&Element>) -> Option<char> {
    let Some(Element::Line(points)) = element else { return None };
    let [(x0, y0), (x1, y1)] = points[..] else { return None };
    let (dx, dy) = ((x1 - x0).abs(), (y1 - y0).abs());
    match (dx, dy) {
        (dx, dy) if dy == 0.0 && dx > 0.0 && dx <= 10.0 && y0 == y && x < x0.min(x1) => Some('y'),
        (dx, dy) if dx == 0.0 && dy > 0.0 && dy <= 10.0 && x0 == x => Some('x'),
        _ => None,
    }
}

/// The figure read back: its texts in order, with each run of tick labels
/// (a label followed by its tick mark) gathered into one axis.
pub enum Item {
    Text(String),
    Ticks(Ticks),
}

pub fn read(svg: &str) -> Vec<Item> {
    let elements = elements(svg);
    let mut items: Vec<Item> = Vec::new();
    let mut i = 0;
    let mut in_ticks = false;
    while i < elements.len() {
        match &elements[i] {
            Element::Text(x, y, text) => match tick_mark(*x, *y, elements.get(i + 1)) {
                Some(axis) => {
                    match items.last_mut() {
                        Some(Item::Ticks(ticks)) if in_ticks && ticks.axis == axis => ticks.labels.push(text.clone()),
                        _ => items.push(Item::Ticks(Ticks { axis, labels: vec![text.clone()] })),
                    }
                    in_ticks = true;
                    i += 2;
                    continue;
                }
                None => items.push(Item::Text(text.clone())),
            },
            Element::Line(_) | Element::Other => {}
        }
        in_ticks = false;
        i += 1;
    }
    items
}

/// Every axis of the figure.
pub fn axes(svg: &str) -> Vec<Ticks> {
    read(svg)
        .into_iter()
        .filter_map(|item| match item {
            Item::Ticks(t) => Some(t),
            Item::Text(_) => None,
        })
        .collect()
}

/// A reviewable summary: the size, then every text and axis in order.
pub fn summary(svg: &str) -> String {
    let size = svg.find("<svg").map_or(String::new(), |start| {
        let tag = &svg[start..start + svg[start..].find('>').unwrap_or(0)];
        format!("{}x{}", attribute(tag, "width").unwrap_or("?"), attribute(tag, "height").unwrap_or("?"))
    });
    let mut out = format!("svg {size}\n");
    for item in read(svg) {
        match item {
            Item::Text(text) if text.is_empty() => {}
            Item::Text(text) => out.push_str(&format!("text: {text}\n")),
            Item::Ticks(t) => out.push_str(&format!("{} ticks: {}\n", t.axis, t.labels.join(" | "))),
        }
    }
    out
}

/// What every figure must be: axes whose visible tick labels differ, no
/// number that is not one, and at least one axis or a sentence saying why
/// there is none.
pub fn assert_honest(name: &str, svg: &str) {
    for ticks in axes(svg) {
        let visible: Vec<&String> = ticks.labels.iter().filter(|l| !l.is_empty()).collect();
        for (i, label) in visible.iter().enumerate() {
            assert!(
                !visible[..i].contains(label),
                "figure {name}: the {} axis repeats the tick label `{label}`: {:?}",
                ticks.axis,
                ticks.labels
            );
        }
    }
    for bad in ["NaN", "inf\"", "=\"inf", "-inf", "Infinity"] {
        assert!(!svg.contains(bad), "figure {name}: the SVG contains `{bad}`");
    }
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "figure {name}: not one SVG document");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ticks_and_texts() {
        let svg = r##"<svg width="10" height="20" xmlns="x">
<text x="1" y="1">
A &lt;title&gt;
</text>
<text x="40" y="189" dy="0.5ex" text-anchor="end">
0.0
</text>
<polyline fill="none" points="44,189 49,189 "/>
<text x="40" y="112" dy="0.5ex" text-anchor="end">
0.0
</text>
<polyline fill="none" points="44,112 49,112 "/>
<polyline fill="none" points="50,190 233,190 "/>
<text x="50" y="200">
1
</text>
<polyline fill="none" points="50,190 50,195 "/>
</svg>"##;
        assert_eq!(summary(svg), "svg 10x20\ntext: A <title>\ny ticks: 0.0 | 0.0\nx ticks: 1\n");
        let caught = std::panic::catch_unwind(|| assert_honest("t", svg));
        assert!(caught.is_err(), "a repeated tick label must fail the check");
    }
}
