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
    /// The value axis: a gridline and its amount at 0, half and the
    /// largest amount.
    pub ticks: Vec<Tick>,
}

/// One gridline of the value axis, with its amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tick {
    /// The line, from (x1, y1) to (x2, y2).
    pub x1: u32,
    /// See `x1`.
    pub y1: u32,
    /// See `x1`.
    pub x2: u32,
    /// See `x1`.
    pub y2: u32,
    /// Where its amount is written.
    pub tx: u32,
    /// See `tx`.
    pub ty: u32,
    /// `start`, `middle` or `end`.
    pub anchor: &'static str,
    /// The amount, rounded for people.
    pub label: String,
}

/// 0, half and all of `max`, each with its share of `span` pixels.
fn steps(max: Decimal, span: u32) -> Vec<(u32, String)> {
    [0u32, 1, 2]
        .into_iter()
        .map(|k| {
            (
                span * k / 2,
                money(max * Decimal::from(k) / Decimal::from(2)),
            )
        })
        .collect()
}

/// Input: a label, an optional link, and one amount per series.
pub type Values = (String, Option<String>, Vec<Decimal>);

/// The first `n` items (callers pass them largest first) and one item
/// summing the rest, when there are more: 200 owners once drew a chart
/// 25,828 px tall (issue 19).
pub fn largest_and_rest(mut items: Vec<Values>, n: usize) -> Vec<Values> {
    if items.len() <= n + 1 {
        return items;
    }
    let rest = items.split_off(n);
    let width = rest.iter().map(|(_, _, v)| v.len()).max().unwrap_or(0);
    let mut sums = vec![Decimal::ZERO; width];
    for (_, _, v) in &rest {
        for (s, x) in sums.iter_mut().zip(v) {
            *s += *x;
        }
    }
    items.push((format!("{} other owners", rest.len()), None, sums));
    items
}

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
    let plot_h = u32::try_from(items.len()).unwrap_or(0) * ROW + 4;
    let ticks = steps(max, span)
        .into_iter()
        .map(|(x, label)| Tick {
            x1: LABEL_W + x,
            y1: 0,
            x2: LABEL_W + x,
            y2: plot_h,
            tx: LABEL_W + x,
            ty: plot_h + AXIS - 4,
            anchor: if x == 0 {
                "start"
            } else if x == span {
                "end"
            } else {
                "middle"
            },
            label,
        })
        .collect();
    Chart {
        width,
        height: plot_h + AXIS,
        items,
        max: money(max),
        series: series.to_vec(),
        anchor: "end",
        ticks,
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
    let ticks = steps(max, PLOT_H)
        .into_iter()
        .skip(1)
        .map(|(y, label)| Tick {
            x1: 0,
            y1: PLOT_H - y,
            x2: slot * n,
            y2: PLOT_H - y,
            tx: 2,
            ty: (PLOT_H - y) + 11,
            anchor: "start",
            label,
        })
        .collect();
    Chart {
        width: slot * n,
        height: PLOT_H + AXIS,
        items,
        max: money(max),
        series: series.to_vec(),
        anchor: "middle",
        ticks,
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
        assert_eq!(
            c.height,
            3 * ROW + 4 + AXIS,
            "the rows and the value axis under them"
        );
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
    fn the_value_axis_carries_its_amounts() {
        let items = vec![("a".to_owned(), None, vec![d("100")])];
        let c = horizontal(&items, &["computed"], 430);
        let labels: Vec<&str> = c.ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["$0.0000", "$50.0000", "$100.0000"]);
        let span = 430 - LABEL_W - 10;
        let xs: Vec<u32> = c.ticks.iter().map(|t| t.x1).collect();
        assert_eq!(xs, [LABEL_W, LABEL_W + span / 2, LABEL_W + span]);
        // The largest bar ends on the last gridline.
        assert_eq!(c.items[0].bars[0].x + c.items[0].bars[0].w, LABEL_W + span);
        let c = columns(&items, &["computed"], 100);
        let labels: Vec<&str> = c.ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["$50.0000", "$100.0000"]);
        assert_eq!(c.ticks[1].y1, 0);
    }

    /// A few owners are drawn as they are; many are the largest and one
    /// bar for the rest, so the chart stays one screen tall.
    #[test]
    fn many_items_are_the_largest_and_the_rest() {
        let items: Vec<Values> = (0..200)
            .map(|i| {
                (
                    format!("o{i}"),
                    None,
                    vec![Decimal::from(200 - i), Decimal::from(1)],
                )
            })
            .collect();
        let top = largest_and_rest(items.clone(), 15);
        assert_eq!(top.len(), 16);
        assert_eq!(top[0].0, "o0");
        assert_eq!(top[15].0, "185 other owners");
        let rest: Decimal = (15..200).map(|i| Decimal::from(200 - i)).sum();
        assert_eq!(top[15].2, vec![rest, Decimal::from(185)]);
        let c = horizontal(&top, &["computed", "reported"], 760);
        assert!(c.height < 600, "{}", c.height);
        assert_eq!(largest_and_rest(items[..10].to_vec(), 15).len(), 10);
    }

    #[test]
    fn an_empty_chart_draws_nothing() {
        let c = horizontal(&[], &["computed"], 400);
        assert!(c.items.is_empty());
        assert_eq!(c.max, "$0.0000");
    }
}
