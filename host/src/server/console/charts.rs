//! Charts drawn by the server as inline SVG: a column per day for a
//! series, a bar per category for a distribution. No script, no library;
//! each chart carries its figures as text too (titles and labels), so it
//! reads without the picture.

use maud::{Markup, html};

/// One column or bar: its label, its value, and the value as shown.
pub struct Point {
    pub label: String,
    pub value: f64,
    pub shown: String,
}

/// Columns over time (e.g. a value per day), scaled to the largest, or
/// to `max` when given (1.0 for rates).
pub fn columns(title: &str, points: &[Point], max: Option<f64>) -> Markup {
    let (w, h, base) = (640.0, 180.0, 150.0);
    let top = max
        .unwrap_or_else(|| points.iter().map(|p| p.value).fold(0.0, f64::max))
        .max(f64::MIN_POSITIVE);
    let n = points.len().max(1) as f64;
    let step = w / n;
    let bar = (step * 0.7).max(1.0);
    // Label every column when they fit, else about ten of them.
    let every = (points.len() / 10).max(1);
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox={ "0 0 " (w) " " (h) } role="img" aria-label=(title) {
                line x1="0" y1=(base) x2=(w) y2=(base) class="axis" {}
                @for (i, p) in points.iter().enumerate() {
                    @let height = (p.value / top).clamp(0.0, 1.0) * (base - 10.0);
                    @let x = i as f64 * step + (step - bar) / 2.0;
                    rect x=(format!("{x:.1}")) y=(format!("{:.1}", base - height)) width=(format!("{bar:.1}")) height=(format!("{height:.1}")) class="bar" {
                        title { (p.label) ": " (p.shown) }
                    }
                    @if i % every == 0 {
                        text x=(format!("{:.1}", x + bar / 2.0)) y=(base + 18.0) class="tick" text-anchor="middle" { (p.label) }
                    }
                }
            }
        }
    }
}

/// Horizontal bars, one per category, scaled to the largest.
pub fn bars(title: &str, points: &[Point]) -> Markup {
    let top = points
        .iter()
        .map(|p| p.value)
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let row = 26.0;
    let h = row * points.len().max(1) as f64;
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox={ "0 0 640 " (h) } role="img" aria-label=(title) {
                @for (i, p) in points.iter().enumerate() {
                    @let y = i as f64 * row;
                    @let width = (p.value / top).clamp(0.0, 1.0) * 400.0;
                    text x="150" y=(format!("{:.1}", y + 17.0)) class="label" text-anchor="end" { (p.label) }
                    rect x="160" y=(format!("{:.1}", y + 5.0)) width=(format!("{width:.1}")) height="16" class="bar" {
                        title { (p.label) ": " (p.shown) }
                    }
                    text x=(format!("{:.1}", 166.0 + width)) y=(format!("{:.1}", y + 17.0)) class="value" { (p.shown) }
                }
            }
        }
    }
}
