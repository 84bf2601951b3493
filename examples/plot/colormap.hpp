#pragma once
// Colors of the plots.
//   viridis(v)        v in [0, 1] -> matplotlib's viridis (perceptually uniform, readable in grey and by the
//                     color-blind): dark purple (68, 1, 84) at 0, yellow (253, 231, 37) at 1; NaN and v < 0 give
//                     the 0 end, v > 1 the 1 end. 9 samples of matplotlib's table (those of
//                     time_series_classifier/heatmap.hpp), linearly interpolated.
//   series_color(i)   the i-th line color (matplotlib's "tab10" cycle: blue, orange, green, red, ...)
//   hex(color)        "#rrggbb"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <string>

#include "figure.hpp"

namespace plot {

inline Color viridis(double v) {
  static const unsigned char table[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},   {44, 113, 142},
                                            {33, 144, 141}, {39, 173, 129}, {92, 200, 99},   {170, 220, 50},
                                            {253, 231, 37}};
  if (!(v >= 0)) v = 0;  // also NaN
  if (v > 1) v = 1;
  const double pos = v * 8;
  const int i = std::min(7, static_cast<int>(pos));
  const double f = pos - i;
  const auto mix = [&](int k) {
    return static_cast<std::uint8_t>(std::lround(table[i][k] * (1 - f) + table[i + 1][k] * f));
  };
  return Color{mix(0), mix(1), mix(2)};
}

inline Color series_color(int i) {
  static const Color tab10[10] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
                                  {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  return tab10[((i % 10) + 10) % 10];
}

inline std::string hex(Color c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", c.r, c.g, c.b);
  return buf;
}

}  // namespace plot
