#pragma once
// A figure as a display list: what to draw, in pixels, in drawing order. The backends draw the same list:
// plot/png.hpp (raster, antialiased text through stb_truetype) and plot/svg.hpp (vector, text as <text>).
//
//   Figure fig(width, height);                   pixels; (0, 0) is the top-left corner, y grows downward
//   fig.rect(x, y, w, h, color)                  filled rectangle
//   fig.line({{x0, y0}, {x1, y1}, ...}, color, width)   polyline, `width` pixels wide (1: a hairline)
//   fig.frame(x, y, w, h, color)                 the 1-pixel outline of a rectangle (a closed polyline)
//   fig.text(x, y, "label", size, color, anchor, vertical)
//                                                `size`: the font size in pixels (the em, as SVG's font-size);
//                                                (x, y) is on the baseline; anchor: where (x, y) is along the text
//                                                (start, middle, end); vertical: rotated 90 degrees
//                                                counter-clockwise (reads bottom to top, like a y-axis label)
//   fig.cells(x, y, w, h, rows, cols, colors)    a grid of rows x cols colored cells filling the rectangle
//                                                (colors row-major, row 0 at the top): heatmaps, color bars
// text_width(text, size) estimates a text's width in pixels (DejaVu Sans' mean advance) for layouts that must
// not depend on the font file; the PNG backend measures the real glyphs.

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace plot {

struct Color {
  std::uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Color& o) const { return r == o.r && g == o.g && b == o.b; }
  bool operator!=(const Color& o) const { return !(*this == o); }
};

inline constexpr Color kWhite{255, 255, 255};
inline constexpr Color kBlack{0, 0, 0};
inline constexpr Color kText{34, 34, 34};        // labels and titles
inline constexpr Color kAxis{64, 64, 64};        // axis frames and tick marks
inline constexpr Color kGrid{225, 225, 225};     // grid lines inside plot areas
inline constexpr Color kMuted{110, 110, 110};    // secondary text (subtitles)

enum class Anchor { Start, Middle, End };

struct Point {
  double x = 0, y = 0;
};

struct FilledRect {
  double x = 0, y = 0, w = 0, h = 0;  // pixels
  Color fill;
};

struct Polyline {
  std::vector<Point> points;
  Color color;
  double width = 1;  // pixels
};

struct Text {
  double x = 0, y = 0;  // a point on the baseline, placed by `anchor`
  std::string text;     // UTF-8
  double size = 12;     // font size (em) in pixels
  Color color = kText;
  Anchor anchor = Anchor::Start;
  bool vertical = false;  // rotated 90 degrees counter-clockwise about (x, y)
};

struct Cells {
  double x = 0, y = 0, w = 0, h = 0;  // the rectangle the grid fills, pixels
  int rows = 0, cols = 0;
  std::vector<Color> colors;  // rows * cols, row-major, row 0 at the top
};

using Item = std::variant<FilledRect, Polyline, Text, Cells>;

struct Figure {
  int width = 0, height = 0;  // pixels
  Color background = kWhite;
  std::vector<Item> items;

  Figure() = default;
  Figure(int w, int h) : width(w), height(h) {}

  void rect(double x, double y, double w, double h, Color fill) { items.emplace_back(FilledRect{x, y, w, h, fill}); }
  void line(std::vector<Point> points, Color color, double width = 1) {
    items.emplace_back(Polyline{std::move(points), color, width});
  }
  // A 1-pixel outline whose lines sit on pixel centers (crisp in the raster).
  void frame(double x, double y, double w, double h, Color color) {
    const double x0 = x + 0.5, y0 = y + 0.5, x1 = x + w - 0.5, y1 = y + h - 0.5;
    line({{x0, y0}, {x1, y0}, {x1, y1}, {x0, y1}, {x0, y0}}, color, 1);
  }
  void text(double x, double y, std::string s, double size, Color color = kText, Anchor anchor = Anchor::Start,
            bool vertical = false) {
    items.emplace_back(Text{x, y, std::move(s), size, color, anchor, vertical});
  }
  void cells(double x, double y, double w, double h, int rows, int cols, std::vector<Color> colors) {
    items.emplace_back(Cells{x, y, w, h, rows, cols, std::move(colors)});
  }
};

// Estimated width in pixels of `s` at font size `size` (0.6 em per character: DejaVu Sans' digits are 0.636 em,
// its lower-case letters about 0.58). UTF-8 continuation bytes do not count.
inline double text_width(const std::string& s, double size) {
  double n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) n += 1;
  return 0.6 * size * n;
}

}  // namespace plot
