#pragma once
// Building blocks of the figures: boxes, linear scales, axes with ticks, a color bar, a legend.
//   Box{x, y, w, h}                       a rectangle in pixels (y down)
//   Scale{d0, d1, p0, p1}                 data [d0, d1] -> pixels [p0, p1] (p1 < p0 for a y axis pointing up);
//                                         scale(v), scale.inverse(pixel)
//   value_axis_left(fig, area, y, ticks, decimals_of)   tick marks and labels left of `area` at data values
//   value_axis_bottom(fig, area, x, ticks, interval)    the same below `area`
//   colorbar(fig, box, lo, hi, label)     viridis from lo (bottom) to hi (top), framed, ticks and labels on
//                                         the right at nice values of [lo, hi] (and at hi itself when the last
//                                         nice value is well below it), `label` vertical beside them
//   legend(fig, x, y, entries, size)      one row of entries "[line] name", starting at (x, baseline y); returns
//                                         its width in pixels
// Sizes: tick marks 5 px, labels 13 px unless given, 6 px between a tick mark and its label.

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "colormap.hpp"
#include "figure.hpp"
#include "ticks.hpp"

namespace plot {

struct Box {
  double x = 0, y = 0, w = 0, h = 0;
  double right() const { return x + w; }
  double bottom() const { return y + h; }
  bool contains(double px, double py) const { return px >= x && px < x + w && py >= y && py < y + h; }
};

struct Scale {
  double d0 = 0, d1 = 1, p0 = 0, p1 = 1;
  double operator()(double v) const { return d1 == d0 ? (p0 + p1) / 2 : p0 + (v - d0) * (p1 - p0) / (d1 - d0); }
  double inverse(double p) const { return p1 == p0 ? d0 : d0 + (p - p0) * (d1 - d0) / (p1 - p0); }
};

inline constexpr double kTick = 5;      // tick mark length, pixels
inline constexpr double kTickGap = 6;   // tick mark to label
inline constexpr double kTickSize = 13; // tick label font size

// Labels at pixel positions `at` (y values), right-aligned left of area.x.
inline void ticks_left(Figure& fig, const Box& area, const std::vector<std::pair<double, std::string>>& at,
                       double size = kTickSize) {
  for (const auto& [py, label] : at) {
    fig.line({{area.x - kTick, py}, {area.x, py}}, kAxis, 1);
    fig.text(area.x - kTick - kTickGap + 2, py + size * 0.36, label, size, kText, Anchor::End);
  }
}

// Labels at pixel positions `at` (x values), centered below area.
inline void ticks_bottom(Figure& fig, const Box& area, const std::vector<std::pair<double, std::string>>& at,
                         double size = kTickSize) {
  for (const auto& [px, label] : at) {
    fig.line({{px, area.bottom()}, {px, area.bottom() + kTick}}, kAxis, 1);
    fig.text(px, area.bottom() + kTick + kTickGap + size * 0.72, label, size, kText, Anchor::Middle);
  }
}

inline void value_axis_left(Figure& fig, const Box& area, const Scale& y, const std::vector<double>& ticks,
                            double size = kTickSize) {
  const double interval = ticks.size() > 1 ? ticks[1] - ticks[0] : 1;
  std::vector<std::pair<double, std::string>> at;
  for (double v : ticks) at.emplace_back(std::round(y(v)) + 0.5, tick_label(v, interval));
  ticks_left(fig, area, at, size);
}

inline void value_axis_bottom(Figure& fig, const Box& area, const Scale& x, const std::vector<double>& ticks,
                              double size = kTickSize) {
  const double interval = ticks.size() > 1 ? ticks[1] - ticks[0] : 1;
  std::vector<std::pair<double, std::string>> at;
  for (double v : ticks) at.emplace_back(std::round(x(v)) + 0.5, tick_label(v, interval));
  ticks_bottom(fig, area, at, size);
}

// Horizontal grid lines across area at the y ticks.
inline void grid_lines(Figure& fig, const Box& area, const Scale& y, const std::vector<double>& ticks) {
  for (double v : ticks) {
    const double py = std::round(y(v)) + 0.5;
    if (py > area.y + 1 && py < area.bottom() - 1) fig.line({{area.x, py}, {area.right(), py}}, kGrid, 1);
  }
}

inline void colorbar(Figure& fig, const Box& box, double lo, double hi, const std::string& label,
                     double size = kTickSize) {
  const int n = 128;  // color steps
  std::vector<Color> colors;
  for (int i = 0; i < n; ++i) colors.push_back(viridis(1.0 - (i + 0.5) / n));  // row 0 (top) is hi
  // the ends exactly: the top row hi, the bottom row lo
  colors.front() = viridis(1.0);
  colors.back() = viridis(0.0);
  fig.cells(box.x, box.y, box.w, box.h, n, 1, std::move(colors));
  fig.frame(box.x - 1, box.y - 1, box.w + 2, box.h + 2, kAxis);
  const Scale y{lo, hi, box.bottom(), box.y};
  const auto ticks = nice_ticks(lo, hi, 5);
  const double interval = ticks.size() > 1 ? ticks[1] - ticks[0] : 1;
  double widest = 0;
  for (double v : ticks) {
    const double py = std::round(y(v)) + 0.5;
    const std::string text = tick_label(v, interval);
    fig.line({{box.right() + 1, py}, {box.right() + 1 + kTick, py}}, kAxis, 1);
    fig.text(box.right() + 1 + kTick + kTickGap - 2, py + size * 0.36, text, size, kText, Anchor::Start);
    widest = std::max(widest, text_width(text, size));
  }
  // the top of the scale (the largest weight) labeled too when it is well above the last tick
  if (!ticks.empty() && y(ticks.back()) - box.y > 3 * size) {
    std::string text = tick_label(hi, interval / 10);  // one decimal more than the ticks, trailing zeros dropped
    while (text.find('.') != std::string::npos && (text.back() == '0' || text.back() == '.')) text.pop_back();
    fig.line({{box.right() + 1, box.y + 0.5}, {box.right() + 1 + kTick, box.y + 0.5}}, kAxis, 1);
    fig.text(box.right() + 1 + kTick + kTickGap - 2, box.y + 0.5 + size * 0.36, text, size, kText, Anchor::Start);
    widest = std::max(widest, text_width(text, size));
  }
  fig.text(box.right() + kTick + kTickGap + widest + 10 + size, box.y + box.h / 2, label, size, kText, Anchor::Middle,
           true);
}

struct LegendEntry {
  std::string name;
  Color color;
};

inline double legend(Figure& fig, double x, double y, const std::vector<LegendEntry>& entries, double size = kTickSize) {
  const double start = x;
  for (const auto& e : entries) {
    const double ly = y - size * 0.33;
    fig.line({{x, ly}, {x + 22, ly}}, e.color, 2.5);
    fig.text(x + 28, y, e.name, size, kText);
    x += 28 + text_width(e.name, size) + 20;
  }
  return x - start - 20;
}

}  // namespace plot
