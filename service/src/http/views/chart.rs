//! Chart geometry for the pages: amounts in, whole pixels out. The
//! templates only place rectangles and (escaped) labels, so a chart needs
//! no script, no font and no float.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;

use crate::export::money;

/// One rectangle, in pixels from the chart's top left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rect {
    /// Left.
    pub x: u32,
    /// Top.
    pub y: u32,
    pub w: u32,
    pub h: u32,
    /// Which series (a CSS class: `computed`, `reported`).
    pub series: &'static str,
    /// The amount, rounded for people (the SVG `<title>`).
    pub value: String,
}

/// One labelled item of a chart: a bar per series.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// Its label (escaped by the template).
    pub label: String,
    /// Where clicking the label goes, if anywhere.
    pub link: Option<String>,
    /// Where the label sits.
    pub label_x: u32,
    /// Where the label sits.
    pub label_y: u32,
    /// The bars.
    pub bars: Vec<Rect>,
}

/// A chart ready to draw.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    /// Width, px.
    pub width: u32,
    /// Height, px.
    pub height: u32,
    /// The items.
    pub items: Vec<Item>,
    /// The largest amount, rounded for people (the scale).
    pub max: String,
    /// Series names in drawing order, for the legend.
    pub series: Vec<&'static str>,
    /// How labels align to their point (`end`: left of bars; `middle`:
    /// under columns).
    pub anchor: &'static str,
}

/// Input: a label, an optional link, and one amount per series.
pub type Values = (String, Option<String>, Vec<Decimal>);

/// `value / max` of `span` pixels, rounded half up; nothing for zero or
/// less (a refund is not drawn as a bar).
fn scale(value: Decimal, max: Decimal, span: u32) -> u32 {
    if max <= Decimal::ZERO || value <= Decimal::ZERO {
        return 0;
    }
    let px = (value * Decimal::from(span) / max).round();
    // At least one pixel, so a small amount is still visible.
    px.to_u32().unwrap_or(span).clamp(1, span)
}

fn largest(items: &[Values]) -> Decimal {
    items
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .fold(Decimal::ZERO, Decimal::max)
}

const ROW: u32 = 26;
const BAR: u32 = 9;
const LABEL_W: u32 = 220;

/// Horizontal bars, one row per item, labels on the left: for spend by
/// owner, where labels are long.
pub fn horizontal(items: &[Values], series: &[&'static str], width: u32) -> Chart {
    let max = largest(items);
    let span = width.saturating_sub(LABEL_W + 10);
    let items = items
        .iter()
        .zip(0u32..)
        .map(|((label, link, values), i)| {
            let top = i * ROW + 4;
            Item {
                label: label.clone(),
                link: link.clone(),
                label_x: LABEL_W - 6,
                label_y: top + BAR + 3,
                bars: values
                    .iter()
                    .zip(series)
                    .zip(0u32..)
                    .map(|((v, s), j)| Rect {
                        x: LABEL_W,
                        y: top + j * BAR,
                        w: scale(*v, max, span),
                        h: BAR - 1,
                        series: s,
                        value: money(*v),
                    })
                    .collect(),
            }
        })
        .collect::<Vec<_>>();
    Chart {
        width,
        height: u32::try_from(items.len()).unwrap_or(0) * ROW + 8,
        items,
        max: money(max),
        series: series.to_vec(),
        anchor: "end",
    }
}

const PLOT_H: u32 = 160;
const AXIS: u32 = 18;

/// Columns, one per item left to right, labels below: for spend per day.
pub fn columns(items: &[Values], series: &[&'static str], width: u32) -> Chart {
    let max = largest(items);
    let n = u32::try_from(items.len()).unwrap_or(1).max(1);
    let slot = (width / n).max(4);
    let per = u32::try_from(series.len()).unwrap_or(1).max(1);
    let bar_w = ((slot.saturating_sub(2)) / per).max(1);
    let items = items
        .iter()
        .zip(0u32..)
        .map(|((label, link, values), i)| Item {
            label: label.clone(),
            link: link.clone(),
            label_x: i * slot + slot / 2,
            label_y: PLOT_H + AXIS - 4,
            bars: values
                .iter()
                .zip(series)
                .zip(0u32..)
                .map(|((v, s), j)| {
                    let h = scale(*v, max, PLOT_H);
                    Rect {
                        x: i * slot + 1 + j * bar_w,
                        y: PLOT_H - h,
                        w: bar_w,
                        h,
                        series: s,
                        value: money(*v),
                    }
                })
                .collect(),
        })
        .collect();
    Chart {
        width: slot * n,
        height: PLOT_H + AXIS,
        items,
        max: money(max),
        series: series.to_vec(),
        anchor: "middle",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn bars_are_proportional_whole_pixels_and_small_amounts_stay_visible() {
        let items = vec![
            ("a".to_owned(), None, vec![d("100"), d("50")]),
            ("b".to_owned(), None, vec![d("0.0001"), d("0")]),
            ("c".to_owned(), None, vec![d("-3"), d("25")]),
        ];
        let c = horizontal(&items, &["computed", "reported"], 430);
        let w: Vec<Vec<u32>> = c
            .items
            .iter()
            .map(|i| i.bars.iter().map(|b| b.w).collect())
            .collect();
        // 200 px for the largest amount: 100 -> 200, 50 -> 100, 25 -> 50.
        assert_eq!(w, vec![vec![200, 100], vec![1, 0], vec![0, 50]]);
        assert_eq!(c.max, "$100.0000");
        assert_eq!(c.items[1].bars[0].value, "$0.0001");
        assert_eq!(c.height, 3 * ROW + 8);
    }

    #[test]
    fn columns_stand_on_one_baseline() {
        let items = vec![
            ("01".to_owned(), None, vec![d("2")]),
            ("02".to_owned(), None, vec![d("8")]),
        ];
        let c = columns(&items, &["computed"], 100);
        let b: Vec<&Rect> = c.items.iter().flat_map(|i| &i.bars).collect();
        assert_eq!((b[0].h, b[1].h), (40, PLOT_H));
        assert_eq!(b[0].y + b[0].h, PLOT_H);
        assert_eq!(b[1].y, 0);
        assert!(b[1].x > b[0].x);
    }

    #[test]
    fn an_empty_chart_draws_nothing() {
        let c = horizontal(&[], &["computed"], 400);
        assert!(c.items.is_empty());
        assert_eq!(c.max, "$0.0000");
    }
}
