//! The report's charts: scores across intervention columns with their 95% intervals as bars, and training loss
//! curves.

use std::path::Path;

use anyhow::{Result, bail};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{Drawing, PALETTE, PlotFiles, font, write};

/// One line of a score chart: a score (mean, 95% interval low, high) per column, `None` where it was not measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreSeries {
    pub name: String,
    pub points: Vec<Option<(f64, f64, f64)>>,
}

struct ScoreChart<'a> {
    title: &'a str,
    y_label: &'a str,
    columns: &'a [String],
    series: &'a [ScoreSeries],
    y: (f64, f64),
}

/// Writes `<stem>.svg` (and `.png`): one series per language over the columns (No Int, μ, P75, …), each point with
/// its interval as an error bar.
pub fn scores(
    title: &str,
    y_label: &str,
    columns: &[String],
    series: &[ScoreSeries],
    stem: &Path,
) -> Result<PlotFiles> {
    if columns.is_empty() || series.iter().all(|s| s.points.iter().all(Option::is_none)) {
        bail!("nothing to plot for {title:?}: no scores");
    }
    if let Some(s) = series.iter().find(|s| s.points.len() != columns.len()) {
        bail!("series {:?} of {title:?} has {} points for {} columns", s.name, s.points.len(), columns.len());
    }
    let (lo, hi) = series
        .iter()
        .flat_map(|s| s.points.iter().flatten())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &(_, l, h)| (a.min(l), b.max(h)));
    let pad = ((hi - lo) * 0.08).max(1.0);
    let y = ((lo - pad).max(0.0), (hi + pad).min(100.0).max(lo + 1.0));
    write(&ScoreChart { title, y_label, columns, series, y }, stem)
}

impl Drawing for ScoreChart<'_> {
    fn size(&self) -> (u32, u32) {
        (760, 420)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let n = self.columns.len();
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, font(15.0))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), self.y.0..self.y.1)?;
        let columns = self.columns;
        let label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                columns.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_labels(2 * n + 1)
            .x_label_formatter(&label)
            .disable_x_mesh()
            .light_line_style(WHITE)
            .y_desc(self.y_label)
            .label_style(font(12.0))
            .axis_desc_style(font(13.0))
            .draw()?;
        let m = self.series.len() as f64;
        for (k, s) in self.series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let offset = (k as f64 - (m - 1.0) / 2.0) * 0.1;
            let pts: Vec<(f64, (f64, f64, f64))> =
                s.points.iter().enumerate().filter_map(|(i, p)| p.map(|p| (i as f64 + offset, p))).collect();
            chart
                .draw_series(LineSeries::new(pts.iter().map(|&(x, (mean, _, _))| (x, mean)), color.stroke_width(1)))?;
            chart
                .draw_series(
                    pts.iter().map(|&(x, (mean, lo, hi))| ErrorBar::new_vertical(x, lo, mean, hi, color.filled(), 7)),
                )?
                .label(s.name.clone())
                .legend(move |(x, y)| Circle::new((x + 6, y), 4, color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(font(12.0))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    }
}

struct LossChart<'a> {
    title: &'a str,
    series: &'a [(String, Vec<(u64, f64)>)],
    x_max: u64,
    y_max: f64,
}

/// Writes `<stem>.svg` (and `.png`): the training loss per optimizer step, one line per fine-tune.
pub fn losses(title: &str, series: &[(String, Vec<(u64, f64)>)], stem: &Path) -> Result<PlotFiles> {
    let x_max = series.iter().flat_map(|(_, p)| p.iter().map(|p| p.0)).max().unwrap_or(0);
    let y_max = series.iter().flat_map(|(_, p)| p.iter().map(|p| p.1)).filter(|v| v.is_finite()).fold(0.0, f64::max);
    if x_max == 0 || y_max <= 0.0 {
        bail!("nothing to plot for {title:?}: no training steps");
    }
    write(&LossChart { title, series, x_max, y_max: y_max * 1.05 }, stem)
}

impl Drawing for LossChart<'_> {
    fn size(&self) -> (u32, u32) {
        (760, 420)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, font(15.0))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..self.x_max.max(1) as f64, 0f64..self.y_max)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc("optimizer step")
            .y_desc("training loss")
            .label_style(font(12.0))
            .axis_desc_style(font(13.0))
            .draw()?;
        for (k, (name, pts)) in self.series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            // Points as well as the line: a run of one step is a point.
            chart.draw_series(pts.iter().map(|&(x, y)| Circle::new((x as f64, y), 2, color.filled())))?;
            chart
                .draw_series(LineSeries::new(pts.iter().map(|&(x, y)| (x as f64, y)), color.stroke_width(2)))?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(font(12.0))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_name_every_column_and_series_and_refuse_empty_input() {
        let dir = tempfile::tempdir().unwrap();
        let cols: Vec<String> = ["No Int", "μ", "P5"].iter().map(|s| s.to_string()).collect();
        let series = vec![
            ScoreSeries { name: "vi".into(), points: vec![Some((46.8, 42.0, 51.0)), Some((35.8, 31.0, 40.0)), None] },
            ScoreSeries { name: "hi".into(), points: vec![Some((44.6, 40.0, 49.0)), None, Some((43.4, 39.0, 48.0))] },
        ];
        let f = scores("XNLI", "accuracy (%)", &cols, &series, &dir.path().join("s")).unwrap();
        let svg = std::fs::read_to_string(f.svg).unwrap();
        assert!(svg.contains("No Int") && svg.contains("P5") && svg.contains("vi") && svg.contains("hi"), "{svg}");
        let bad = vec![ScoreSeries { name: "x".into(), points: vec![None, None, None] }];
        assert!(scores("t", "y", &cols, &bad, &dir.path().join("b")).is_err());
        let l = losses("loss", &[("null".into(), vec![(1, 1.1), (2, 0.9)])], &dir.path().join("l")).unwrap();
        assert!(std::fs::read_to_string(l.svg).unwrap().contains("null"));
        assert!(losses("loss", &[("null".into(), vec![])], &dir.path().join("m")).is_err());
    }
}
