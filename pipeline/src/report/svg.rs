//! Plots drawn as inline SVG, so a report is one self-contained page: line plots (loss curves,
//! CED curves), grouped bar plots (error by yaw bin, ablation rows) and a colour bar. No
//! external fonts, scripts or URLs; plain `<svg>` elements that any browser draws offline.

use std::fmt::Write;

const WIDTH: f32 = 600.0;
const HEIGHT: f32 = 340.0;
const LEFT: f32 = 64.0;
/// The legend's column, right of the plot area.
const RIGHT: f32 = 150.0;
const TOP: f32 = 34.0;
const BOTTOM: f32 = 48.0;
/// Tableau's ten categorical colours.
pub const PALETTE: [&str; 10] = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

/// Escapes text for SVG and HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One named curve.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f32, f32)>,
}

#[derive(Clone, Debug, Default)]
pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Logarithmic y axis (non-positive values are left out).
    pub log_y: bool,
    /// Draw as steps (a CED curve) rather than straight segments.
    pub steps: bool,
    /// Fixed y range; otherwise from the data.
    pub y_range: Option<(f32, f32)>,
    pub series: Vec<Series>,
}

/// Round tick positions covering [lo, hi]: steps of 1, 2 or 5 × 10^k, about five of them.
pub fn ticks(lo: f32, hi: f32) -> Vec<f32> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) || !lo.is_finite() || !hi.is_finite() {
        return vec![lo];
    }
    // In f64 with the step as mantissa × 10^k, so 3 × 0.1 prints as 0.3.
    let raw = (hi as f64 - lo as f64) / 5.0;
    let exponent = raw.log10().floor() as i32;
    let mantissa = [1.0, 2.0, 5.0, 10.0].into_iter().find(|m| m * 10f64.powi(exponent) >= raw).unwrap_or(10.0);
    let step = mantissa * 10f64.powi(exponent);
    let first = (lo as f64 / step - 1e-9).ceil() as i64;
    let last = (hi as f64 / step + 1e-9).floor() as i64;
    let value = |k: i64| if exponent < 0 { k as f64 * mantissa / 10f64.powi(-exponent) } else { k as f64 * step };
    (first..=last).map(|k| value(k) as f32).collect()
}

fn label(v: f32) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e6 || v.abs() < 0.01 {
        format!("{v:.0e}")
    } else if v.abs() >= 1000.0 || v.fract().abs() < 1e-6 {
        // Up to a million in full: 3500 and 4000 would both read 4e3.
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

/// A label cut to `n` characters with an ellipsis.
fn short(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(n - 1).collect::<String>())
    }
}

fn open(svg: &mut String, title: &str, class: &str, height: f32) {
    let _ = write!(
        svg,
        r#"<svg class="{class}" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" font-family="sans-serif" font-size="12"><title>{t}</title><rect width="100%" height="100%" fill="white"/><text x="{x}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{t}</text>"#,
        t = escape(title),
        x = WIDTH / 2.0
    );
}

fn axis_labels(svg: &mut String, x_label: &str, y_label: &str) {
    let _ = write!(
        svg,
        r#"<text x="{x}" y="{y}" text-anchor="middle">{xl}</text><text transform="translate(14 {cy}) rotate(-90)" text-anchor="middle">{yl}</text>"#,
        x = LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        y = HEIGHT - 8.0,
        xl = escape(x_label),
        cy = TOP + (HEIGHT - TOP - BOTTOM) / 2.0,
        yl = escape(y_label)
    );
}

fn legend(svg: &mut String, names: &[&str]) {
    for (i, name) in names.iter().enumerate() {
        let y = TOP + 8.0 + 16.0 * i as f32;
        let x = WIDTH - RIGHT + 10.0;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{ry}" width="12" height="12" {paint}/><text x="{tx}" y="{ty}">{n}<title>{full}</title></text>"#,
            ry = y - 10.0,
            paint = if i < PALETTE.len() { format!(r#"fill="{}""#, PALETTE[i]) } else { format!(r#"fill="none" stroke="{}" stroke-dasharray="3 2""#, PALETTE[i % PALETTE.len()]) },
            tx = x + 16.0,
            ty = y,
            n = escape(&short(name, 20)),
            full = escape(name)
        );
    }
}

impl LinePlot {
    pub fn svg(&self) -> String {
        let transform = |v: f32| if self.log_y { v.log10() } else { v };
        let visible = |p: &&(f32, f32)| p.0.is_finite() && p.1.is_finite() && (!self.log_y || p.1 > 0.0);
        let points: Vec<(f32, f32)> = self.series.iter().flat_map(|s| s.points.iter().filter(visible).copied()).collect();
        let mut svg = String::new();
        open(&mut svg, &self.title, "plot line-plot", HEIGHT);
        axis_labels(&mut svg, &self.x_label, &self.y_label);
        if points.is_empty() {
            svg.push_str(r#"<text x="230" y="170" text-anchor="middle">no data</text></svg>"#);
            return svg;
        }
        let (mut x0, mut x1) = points.iter().fold((f32::MAX, f32::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
        let (mut y0, mut y1) = self.y_range.map(|(a, b)| (transform(a), transform(b))).unwrap_or_else(|| points.iter().fold((f32::MAX, f32::MIN), |(a, b), p| (a.min(transform(p.1)), b.max(transform(p.1)))));
        if x1 <= x0 {
            (x0, x1) = (x0 - 1.0, x1 + 1.0);
        }
        if self.steps {
            // A CED's last step would sit on the frame.
            x1 += 0.05 * (x1 - x0);
        }
        if y1 <= y0 {
            (y0, y1) = (y0 - 1.0, y1 + 1.0);
        }
        if !self.log_y && self.y_range.is_none() && y0 > 0.0 && y0 < 0.5 * y1 {
            y0 = 0.0;
        }
        let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let sx = |x: f32| LEFT + (x - x0) / (x1 - x0) * pw;
        let sy = |y: f32| TOP + ph - (y - y0) / (y1 - y0) * ph;
        // Grid and ticks.
        let y_ticks: Vec<(f32, String)> = if self.log_y {
            let decades: Vec<(f32, String)> = (y0.floor() as i32..=y1.ceil() as i32).map(|k| k as f32).filter(|k| *k >= y0 - 1e-6 && *k <= y1 + 1e-6).map(|k| (k, label(10f32.powf(k)))).collect();
            if decades.len() >= 2 {
                decades
            } else {
                // Less than two decades in view: round values between, at their logarithms.
                ticks(10f32.powf(y0), 10f32.powf(y1)).into_iter().filter(|v| *v > 0.0).map(|v| (v.log10(), label(v))).filter(|(k, _)| *k >= y0 - 1e-6 && *k <= y1 + 1e-6).collect()
            }
        } else {
            ticks(y0, y1).into_iter().map(|v| (v, label(v))).collect()
        };
        for (v, text) in y_ticks {
            let y = sy(v);
            let _ = write!(svg, r##"<line x1="{LEFT}" x2="{r}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{tx}" y="{ty}" text-anchor="end">{text}</text>"##, r = WIDTH - RIGHT, tx = LEFT - 6.0, ty = y + 4.0);
        }
        for v in ticks(x0, x1) {
            let x = sx(v);
            let _ = write!(svg, r##"<line x1="{x}" x2="{x}" y1="{TOP}" y2="{b}" stroke="#eee"/><text x="{x}" y="{ty}" text-anchor="middle">{t}</text>"##, b = TOP + ph, ty = TOP + ph + 16.0, t = label(v));
        }
        let _ = write!(svg, r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##);
        for (i, s) in self.series.iter().enumerate() {
            let mut path = String::new();
            let mut last: Option<(f32, f32)> = None;
            for &(x, y) in s.points.iter().filter(visible) {
                let (px, py) = (sx(x), sy(transform(y).clamp(y0, y1)));
                match last {
                    None => {
                        let _ = write!(path, "M{px:.1},{py:.1}");
                    }
                    Some((_, ly)) if self.steps => {
                        let _ = write!(path, " L{px:.1},{ly:.1} L{px:.1},{py:.1}");
                    }
                    Some(_) => {
                        let _ = write!(path, " L{px:.1},{py:.1}");
                    }
                }
                last = Some((px, py));
            }
            // Past ten series the colours repeat, dashed.
            let dash = if i >= PALETTE.len() { r#" stroke-dasharray="6 3""# } else { "" };
            let _ = write!(svg, r#"<path d="{path}" fill="none" stroke="{c}" stroke-width="1.8"{dash}><title>{n}</title></path>"#, c = PALETTE[i % PALETTE.len()], n = escape(&s.name));
        }
        legend(&mut svg, &self.series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>());
        svg.push_str("</svg>");
        svg
    }
}

/// Bars in groups: one group per category on the x axis, one bar per series in each.
#[derive(Clone, Debug, Default)]
pub struct BarPlot {
    pub title: String,
    pub y_label: String,
    pub categories: Vec<String>,
    /// (series name, one value per category; None leaves a gap).
    pub series: Vec<(String, Vec<Option<f32>>)>,
}

impl BarPlot {
    pub fn svg(&self) -> String {
        // Many categories (a sweep's variants) get slanted labels below the plot.
        let slanted = self.categories.len() > 4;
        let extra = if slanted { 90.0 } else { 0.0 };
        let mut svg = String::new();
        open(&mut svg, &self.title, "plot bar-plot", HEIGHT + extra);
        axis_labels(&mut svg, "", &self.y_label);
        let top = self.series.iter().flat_map(|s| s.1.iter().flatten()).copied().filter(|v| v.is_finite()).fold(0.0f32, f32::max);
        let top = if top > 0.0 { top * 1.1 } else { 1.0 };
        let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let sy = |y: f32| TOP + ph - y / top * ph;
        for v in ticks(0.0, top) {
            let y = sy(v);
            let _ = write!(svg, r##"<line x1="{LEFT}" x2="{r}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{tx}" y="{ty}" text-anchor="end">{t}</text>"##, r = WIDTH - RIGHT, tx = LEFT - 6.0, ty = y + 4.0, t = label(v));
        }
        let groups = self.categories.len().max(1) as f32;
        let group_width = pw / groups;
        let bar = group_width * 0.8 / self.series.len().max(1) as f32;
        for (g, category) in self.categories.iter().enumerate() {
            let gx = LEFT + g as f32 * group_width;
            let (x, y) = (gx + group_width / 2.0, TOP + ph + 16.0);
            if slanted {
                let _ = write!(svg, r#"<text transform="translate({x} {y}) rotate(-35)" text-anchor="end" font-size="11">{c}<title>{full}</title></text>"#, c = escape(&short(category, 24)), full = escape(category));
            } else {
                let _ = write!(svg, r#"<text x="{x}" y="{y}" text-anchor="middle">{c}</text>"#, c = escape(category));
            }
            for (i, (name, values)) in self.series.iter().enumerate() {
                let Some(v) = values.get(g).copied().flatten().filter(|v| v.is_finite()) else { continue };
                let x = gx + group_width * 0.1 + i as f32 * bar;
                let _ = write!(
                    svg,
                    r#"<rect class="bar" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{c}"><title>{n}: {v:.3}</title></rect>"#,
                    y = sy(v),
                    w = bar * 0.92,
                    h = (TOP + ph - sy(v)).max(0.0),
                    c = PALETTE[i % PALETTE.len()],
                    n = escape(name)
                );
            }
        }
        let _ = write!(svg, r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##);
        if self.series.len() > 1 {
            legend(&mut svg, &self.series.iter().map(|s| s.0.as_str()).collect::<Vec<_>>());
        }
        svg.push_str("</svg>");
        svg
    }
}

/// A perceptual blue → green → yellow → red ramp (a compact "turbo"-like map) for t in [0, 1].
pub fn colormap(t: f32) -> [f32; 3] {
    const STOPS: [[f32; 3]; 6] = [[0.19, 0.07, 0.23], [0.16, 0.47, 0.93], [0.11, 0.81, 0.69], [0.64, 0.99, 0.24], [0.98, 0.73, 0.22], [0.68, 0.05, 0.0]];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 } * (STOPS.len() - 1) as f32;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f32;
    std::array::from_fn(|c| STOPS[i][c] * (1.0 - f) + STOPS[i + 1][c] * f)
}

/// A horizontal colour bar for `colormap` from 0 to `max`, labelled.
pub fn colour_bar(max: f32, unit: &str) -> String {
    let (w, h) = (320.0, 44.0);
    let mut svg = format!(r#"<svg class="plot colour-bar" viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><title>colour scale, {}</title>"#, escape(unit));
    for k in 0..64 {
        let c = colormap(k as f32 / 63.0).map(|v| (v * 255.0).round() as u8);
        let _ = write!(svg, r#"<rect x="{x:.1}" y="4" width="4.6" height="16" fill="rgb({},{},{})"/>"#, c[0], c[1], c[2], x = 10.0 + k as f32 * 4.5);
    }
    let _ = write!(svg, r#"<text x="10" y="36">0</text><text x="298" y="36" text-anchor="end">{} {}</text></svg>"#, label(max), escape(unit));
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(0.13, 0.61), vec![0.2, 0.3, 0.4, 0.5, 0.6]);
    }

    #[test]
    fn a_line_plot_draws_each_series_as_one_path_with_its_legend() {
        let plot = LinePlot {
            title: "loss <total>".into(),
            x_label: "iteration".into(),
            y_label: "loss".into(),
            log_y: true,
            series: vec![Series { name: "a".into(), points: vec![(0.0, 10.0), (1.0, 1.0), (2.0, 0.1)] }, Series { name: "b".into(), points: vec![(0.0, 0.0), (2.0, 5.0)] }],
            ..Default::default()
        };
        let svg = plot.svg();
        assert_eq!(svg.matches("<path").count(), 2);
        assert!(svg.contains("loss &lt;total&gt;") && svg.contains(">a<title>a</title></text>") && svg.contains(">b<title>"));
        // Log axis: one tick label per decade from 0.1 to 10.
        assert!(svg.contains(">0.1</text>") && svg.contains(">1</text>") && svg.contains(">10</text>"));
        assert!(!svg.contains("NaN") && !svg.contains("http"));
    }

    #[test]
    fn a_log_axis_within_one_decade_still_has_labels() {
        let plot = LinePlot { log_y: true, series: vec![Series { name: "loss".into(), points: vec![(0.0, 900.0), (1.0, 250.0)] }], ..Default::default() };
        let svg = plot.svg();
        // 250 to 900 holds no power of ten: round values between are labelled instead.
        for label in [">400</text>", ">600</text>", ">800</text>"] {
            assert!(svg.contains(label), "{label} missing");
        }
        // Thousands in full, not as 4e3 twice.
        let svg = LinePlot { log_y: true, series: vec![Series { name: "loss".into(), points: vec![(0.0, 4700.0), (1.0, 3300.0)] }], ..Default::default() }.svg();
        assert!(svg.contains(">3500</text>") && svg.contains(">4000</text>") && !svg.contains("e3<"), "{svg}");
    }

    #[test]
    fn a_bar_plot_draws_one_bar_per_value() {
        let plot = BarPlot { title: "t".into(), y_label: "%".into(), categories: vec!["0–30°".into(), "30–60°".into()], series: vec![("fit".into(), vec![Some(1.0), None]), ("mean".into(), vec![Some(2.0), Some(3.0)])] };
        assert_eq!(plot.svg().matches(r#"class="bar""#).count(), 3);
    }
}
