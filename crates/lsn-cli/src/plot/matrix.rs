//! Language × language matrices on a diverging colour scale centred on 0 (blue below, white at 0, red above), one
//! panel per matrix, all panels on one scale so they compare: the PPXC heatmaps (row = the language whose neurons
//! were deactivated, column = the language whose perplexity was measured). The colour is symmetric-logarithmic,
//! `sign(v)·ln(1 + |v|) / ln(1 + max|v|)`, so that a diagonal of +1000% does not wash out changes of a few percent;
//! every cell prints its value.

use std::path::Path;

use anyhow::{Result, bail};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontTransform;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{AXIS, Drawing, PlotFiles, TICK_FONT, TITLE_FONT, TITLE_H, font, text_w, write};

const CELL: i32 = 58;
const CELL_H: i32 = 34;
const LABEL_W: i32 = 60;
const GAP: i32 = 70;
const BAR_W: i32 = 14;

/// One panel: a name and `k × k` values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub name: String,
    pub values: Vec<f64>,
}

struct MatrixFigure<'a> {
    title: &'a str,
    labels: &'a [String],
    panels: &'a [Panel],
    row_axis: &'a str,
    col_axis: &'a str,
    /// The largest |value| over every panel: the ends of the colour scale.
    scale: f64,
}

/// Blue → white → red for `t` in `[-1, 1]` (ColorBrewer's RdBu, reversed).
fn diverging(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 7] = [
        (33, 102, 172),
        (103, 169, 207),
        (209, 229, 240),
        (247, 247, 247),
        (253, 219, 199),
        (239, 138, 98),
        (178, 24, 43),
    ];
    let x = (t.clamp(-1.0, 1.0) + 1.0) / 2.0 * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |p: u8, q: u8| (p as f64 + (q as f64 - p as f64) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Where `v` sits on the colour scale whose ends are ±`scale`, in `[-1, 1]` (symmetric log).
fn symlog(v: f64, scale: f64) -> f64 {
    if scale > 0.0 && v.is_finite() { v.signum() * v.abs().ln_1p() / scale.ln_1p() } else { 0.0 }
}

/// A value as a cell shows it: 3 significant digits, a sign.
fn label(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    let digits = if a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:+.digits$}")
}

impl MatrixFigure<'_> {
    fn k(&self) -> i32 {
        self.labels.len() as i32
    }

    fn panel_w(&self) -> i32 {
        self.k() * CELL
    }

    fn origin(&self, p: usize) -> (i32, i32) {
        (LABEL_W + 30 + p as i32 * (self.panel_w() + GAP), TITLE_H + 30)
    }
}

impl Drawing for MatrixFigure<'_> {
    fn size(&self) -> (u32, u32) {
        let n = self.panels.len() as i32;
        let w = LABEL_W + 30 + n * self.panel_w() + (n - 1) * GAP + 110;
        let title_w = text_w(self.title, TITLE_FONT) + 40;
        let h = TITLE_H + 30 + self.k() * CELL_H + 80;
        (w.max(title_w) as u32, h as u32)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let (w, _) = self.size();
        let centre = Pos::new(HPos::Center, VPos::Center);
        root.draw_text(self.title, &font(TITLE_FONT).color(&BLACK).pos(centre), (w as i32 / 2, TITLE_H / 2))?;
        let k = self.k();
        let tick = font(TICK_FONT).color(&BLACK);
        for (p, panel) in self.panels.iter().enumerate() {
            let (x0, y0) = self.origin(p);
            let (x1, y1) = (x0 + k * CELL, y0 + k * CELL_H);
            root.draw_text(&panel.name, &font(14.0).color(&BLACK).pos(centre), ((x0 + x1) / 2, y0 - 16))?;
            for r in 0..k {
                for c in 0..k {
                    let v = panel.values[(r * k + c) as usize];
                    let t = symlog(v, self.scale);
                    let (cx, cy) = (x0 + c * CELL, y0 + r * CELL_H);
                    root.draw(&Rectangle::new([(cx, cy), (cx + CELL, cy + CELL_H)], diverging(t).filled()))?;
                    let ink = if t.abs() > 0.6 { WHITE } else { BLACK };
                    let style = font(11.0).color(&ink).pos(centre);
                    root.draw_text(&label(v), &style, (cx + CELL / 2, cy + CELL_H / 2))?;
                }
            }
            root.draw(&Rectangle::new([(x0, y0), (x1, y1)], AXIS.stroke_width(1)))?;
            for (i, l) in self.labels.iter().enumerate() {
                let i = i as i32;
                let right = tick.pos(Pos::new(HPos::Right, VPos::Center));
                root.draw_text(l, &right, (x0 - 6, y0 + i * CELL_H + CELL_H / 2))?;
                let top = tick.pos(Pos::new(HPos::Center, VPos::Top));
                root.draw_text(l, &top, (x0 + i * CELL + CELL / 2, y1 + 6))?;
            }
            let axis = font(13.0).color(&BLACK);
            root.draw_text(self.col_axis, &axis.pos(centre), ((x0 + x1) / 2, y1 + 34))?;
            let vertical = axis.transform(FontTransform::Rotate270).pos(centre);
            root.draw_text(self.row_axis, &vertical, (x0 - LABEL_W + 6, (y0 + y1) / 2))?;
        }
        // The shared colour bar, right of the last panel.
        let (xl, y0) = self.origin(self.panels.len() - 1);
        let x = xl + self.panel_w() + 24;
        let h = k * CELL_H;
        for i in 0..h {
            let t = 1.0 - 2.0 * i as f64 / (h - 1).max(1) as f64;
            root.draw(&Rectangle::new([(x, y0 + i), (x + BAR_W, y0 + i + 1)], diverging(t).filled()))?;
        }
        root.draw(&Rectangle::new([(x, y0), (x + BAR_W, y0 + h)], AXIS.stroke_width(1)))?;
        let style = tick.pos(Pos::new(HPos::Left, VPos::Center));
        let at = |v: f64| y0 + ((1.0 - symlog(v, self.scale)) / 2.0 * (h - 1) as f64).round() as i32;
        let mut marks = vec![self.scale, 0.0, -self.scale];
        // Intermediate marks at powers of ten show the log scale.
        let mut p = 10f64;
        while p < self.scale / 2.0 {
            marks.extend([p, -p]);
            p *= 10.0;
        }
        for (v, y) in marks.into_iter().map(|v| (v, at(v))) {
            root.draw(&PathElement::new(vec![(x + BAR_W, y), (x + BAR_W + 4, y)], AXIS.stroke_width(1)))?;
            root.draw_text(&label(v), &style, (x + BAR_W + 6, y))?;
        }
        Ok(())
    }
}

/// Writes `<stem>.svg` (and `.png`): one heatmap per panel over `labels` × `labels`, every cell annotated, on one
/// diverging scale centred on 0 whose ends are ± the largest |value| of all panels.
pub fn matrices(
    title: &str,
    labels: &[String],
    panels: &[Panel],
    (row_axis, col_axis): (&str, &str),
    stem: &Path,
) -> Result<PlotFiles> {
    let k = labels.len();
    if k == 0 || panels.is_empty() {
        bail!("nothing to plot for {title:?}: no languages or no matrix");
    }
    if let Some(p) = panels.iter().find(|p| p.values.len() != k * k) {
        bail!("matrix {:?} of {title:?} has {} values, not {k} × {k}", p.name, p.values.len());
    }
    let scale = panels.iter().flat_map(|p| &p.values).filter(|v| v.is_finite()).fold(0f64, |m, v| m.max(v.abs()));
    write(&MatrixFigure { title, labels, panels, row_axis, col_axis, scale }, stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_is_centred_on_white() {
        assert_eq!(diverging(0.0), RGBColor(247, 247, 247));
        assert!(diverging(1.0).0 > diverging(1.0).2 && diverging(-1.0).2 > diverging(-1.0).0);
        assert_eq!(label(12.345), "+12.3");
        assert_eq!(label(-0.5), "-0.50");
        assert_eq!(symlog(0.0, 100.0), 0.0);
        assert!((symlog(100.0, 100.0) - 1.0).abs() < 1e-12 && (symlog(-100.0, 100.0) + 1.0).abs() < 1e-12);
        assert!(symlog(10.0, 1000.0) > 0.3, "small values stay visible");
    }

    #[test]
    fn writes_an_svg_with_every_label_and_refuses_bad_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let labels = vec!["en".to_string(), "zh".to_string()];
        let panels = vec![
            Panel { name: "LAPE".into(), values: vec![5.0, -1.0, 0.5, 30.0] },
            Panel { name: "random".into(), values: vec![0.1, 0.0, -0.2, 0.3] },
        ];
        let out = matrices("PPXC", &labels, &panels, ("deactivated", "measured"), &dir.path().join("m")).unwrap();
        let svg = std::fs::read_to_string(&out.svg).unwrap();
        assert!(svg.contains("+30.0") && svg.contains("LAPE") && svg.contains("random") && svg.contains("zh"));
        let bad = vec![Panel { name: "x".into(), values: vec![1.0] }];
        assert!(matrices("t", &labels, &bad, ("a", "b"), &dir.path().join("n")).is_err());
    }
}
