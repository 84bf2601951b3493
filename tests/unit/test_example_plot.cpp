// The plotting headers of the examples (examples/plot/): the attention heatmap, the per-head panels and the
// training curves, drawn to PNG (decoded again with stb_image.h) and SVG. Pixel checks on synthetic data whose
// answer is known: the brightest cell of a map with one peak maps back to the peak's (query, key) through the
// layout's axis transform, the color bar's ends are the colormap's ends, the input series is drawn above the map
// over the same steps, a falling loss is a line going down left to right. Skipped (with the paths tried) when no
// DejaVu Sans font is installed (Debian fonts-dejavu-core); the SVG checks need no font.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "plot/attention_plots.hpp"
#include "plot/png.hpp"
#include "plot/svg.hpp"
#include "plot/training_curves.hpp"

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#if __has_include(<stb/stb_image.h>)
#include <stb/stb_image.h>
#else
#include <stb_image.h>
#endif

namespace {

using namespace plot;

// The font, or the reason there is none (the test then skips).
const Font* test_font(std::string& why) {
  try {
    return &default_font();
  } catch (const std::exception& e) {
    why = e.what();
    return nullptr;
  }
}

#define REQUIRE_FONT()                   \
  std::string no_font;                   \
  if (test_font(no_font) == nullptr) {   \
    GTEST_SKIP() << no_font;             \
  }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream all;
  all << in.rdbuf();
  return all.str();
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// One map of `rows` x `cols` with a low background and a single peak of 1 at (q0, k0).
Grid peak_map(int rows, int cols, int q0, int k0) {
  Grid g(rows, cols, 0.02);
  for (int q = 0; q < rows; ++q)
    for (int k = 0; k < cols; ++k) g(q, k) = 0.02 + 0.01 * ((q * 7 + k * 3) % 5);  // texture, all < 0.1
  g(q0, k0) = 1.0;
  return g;
}

struct Centroid {
  double x = 0, y = 0;
  long n = 0;
};

// Mean position of the pixels of color c with x in [x0, x1), y in [y0, y1).
Centroid pixels_of(const Raster& r, Color c, int x0 = 0, int y0 = 0, int x1 = 1 << 30, int y1 = 1 << 30) {
  Centroid m;
  for (int y = std::max(0, y0); y < std::min(r.height, y1); ++y)
    for (int x = std::max(0, x0); x < std::min(r.width, x1); ++x)
      if (r.at(x, y) == c) {
        m.x += x + 0.5, m.y += y + 0.5;
        ++m.n;
      }
  if (m.n > 0) m.x /= static_cast<double>(m.n), m.y /= static_cast<double>(m.n);
  return m;
}

HeatmapSpec heatmap_spec(int rows, int cols, int q0, int k0) {
  HeatmapSpec spec;
  spec.map = peak_map(rows, cols, q0, k0);
  spec.title = "MultiHeadAttention, head 2, test sequence 5";
  spec.subtitle = "true class Gun, predicted Point";
  return spec;
}

TEST(ExamplePlotTicks, NiceValuesAndLabels) {
  EXPECT_EQ(nice_ticks(0, 0.37, 5), (std::vector<double>{0, 0.1, 0.2, 0.30000000000000004}));
  EXPECT_EQ(nice_range(0.13, 0.91, 5), (std::pair<double, double>(0.0, 1.0)));
  EXPECT_EQ(nice_range(0.13, 0.91, 10), (std::pair<double, double>(0.1, 1.0)));
  EXPECT_EQ(step_ticks(30, 8), (std::vector<int>{0, 5, 10, 15, 20, 25}));
  EXPECT_EQ(step_ticks(150, 8), (std::vector<int>{0, 20, 40, 60, 80, 100, 120, 140}));
  EXPECT_EQ(tick_label(0.25, 0.05), "0.25");
  EXPECT_EQ(tick_label(0.2, 0.2), "0.2");
  EXPECT_EQ(tick_label(-1e-17, 0.5), "0.0");
  EXPECT_EQ(tick_label(40, 20), "40");
}

TEST(ExamplePlotSvg, HeatmapIsWellFormedWithItsLabels) {
  HeatmapSpec spec = heatmap_spec(12, 30, 4, 23);
  spec.series = {std::vector<double>(30, 0.5)};
  const std::string path = ::testing::TempDir() + "example_plot_heatmap.svg";
  write_svg(path, attention_heatmap(spec));
  const std::string svg = read_file(path);
  std::remove(path.c_str());
  ASSERT_EQ(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
  ASSERT_GE(svg.size(), 7u);
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
  for (const char* label : {">key step<", ">query step<", ">attention weight<", ">input<",
                            ">MultiHeadAttention, head 2, test sequence 5<", ">true class Gun, predicted Point<",
                            ">0<", ">25<", ">10<", ">0.0<", ">1.0<"})
    EXPECT_NE(svg.find(label), std::string::npos) << label;
  EXPECT_EQ(count(svg, "<text"), count(svg, "</text>"));
  EXPECT_EQ(count(svg, "<g"), count(svg, "</g>"));
  EXPECT_EQ(count(svg, "<svg"), 1u);
  // the map as one <rect> per cell, the peak in the colormap's top color, exactly once
  EXPECT_EQ(count(svg, "fill=\"" + hex(viridis(1)) + "\""), 2u);  // the peak and the color bar's top
  EXPECT_GE(count(svg, "<rect"), 12u * 30u);
}

TEST(ExamplePlotSvg, EscapesTextAndEmbedsLargeMapsAsOneImage) {
  HeatmapSpec spec = heatmap_spec(70, 70, 1, 2);
  spec.title = "a < b & \"c\"";
  const std::string svg = to_svg(attention_heatmap(spec));
  EXPECT_NE(svg.find(">a &lt; b &amp; &quot;c&quot;<"), std::string::npos);
  EXPECT_EQ(count(svg, "<image"), 1u);  // 4900 + 128 cells > 4096: the map one PNG; the color bar <rect>s
  EXPECT_EQ(count(svg, "<rect"), 1u + 128u);  // the background and the color bar
  EXPECT_NE(svg.find("href=\"data:image/png;base64,iVBORw0KGgo"), std::string::npos);
  EXPECT_LT(svg.size(), 40000u);
  const std::string rects = to_svg(attention_heatmap(spec), 8000);  // with room for them: the rects
  EXPECT_EQ(count(rects, "<image"), 0u);
  EXPECT_EQ(count(rects, "<rect"), 1u + 128u + 4900u);
}

TEST(ExamplePlotPng, FilesDecodeAtTheFigureSizes) {
  REQUIRE_FONT();
  HeadsSpec heads;
  heads.title = "MultiHeadAttention, 2 heads";
  heads.heads = {peak_map(10, 10, 1, 2), peak_map(10, 10, 3, 4)};
  CurvesSpec curves;
  curves.title = "training curves";
  curves.curves = {{"training", {1, 0.5, 0.25}, {0.5, 0.7, 0.9}}};
  const std::vector<Figure> figures{attention_heatmap(heatmap_spec(10, 10, 2, 3)), attention_heads(heads),
                                    training_curves(curves)};
  for (size_t i = 0; i < figures.size(); ++i) {
    const std::string path = ::testing::TempDir() + "example_plot_" + std::to_string(i) + ".png";
    write_png(path, figures[i]);
    int w = 0, h = 0, channels = 0;
    unsigned char* pixels = stbi_load(path.c_str(), &w, &h, &channels, 3);
    ASSERT_NE(pixels, nullptr) << path << ": " << stbi_failure_reason();
    EXPECT_EQ(w, figures[i].width);
    EXPECT_EQ(h, figures[i].height);
    EXPECT_GT(w, 500);
    EXPECT_GT(h, 300);
    // the decoded pixels are the raster's
    const Raster r = rasterize(figures[i]);
    EXPECT_EQ(std::vector<unsigned char>(pixels, pixels + r.rgb.size()), r.rgb);
    stbi_image_free(pixels);
    std::remove(path.c_str());
  }
  EXPECT_THROW(write_png("/nonexistent-dir/x.png", figures[0]), std::runtime_error);
}

TEST(ExamplePlotPng, PeakCellMapsBackToItsQueryAndKey) {
  REQUIRE_FONT();
  // not square, so swapped axes fail too
  for (const auto& [rows, cols, q0, k0] : std::vector<std::array<int, 4>>{{20, 30, 4, 23}, {30, 30, 17, 6}, {8, 8, 7, 0}}) {
    HeatmapLayout layout;
    const Raster r = rasterize(attention_heatmap(heatmap_spec(rows, cols, q0, k0), &layout));
    // the colormap's top color left of the color bar: the peak cell, and nothing else
    const Centroid peak = pixels_of(r, viridis(1), 0, 0, static_cast<int>(layout.colorbar.x) - 2);
    ASSERT_GT(peak.n, 0);
    EXPECT_TRUE(layout.map.contains(peak.x, peak.y));
    EXPECT_EQ(static_cast<int>(std::floor(layout.query_at(peak.y))), q0);
    EXPECT_EQ(static_cast<int>(std::floor(layout.key_at(peak.x))), k0);
    EXPECT_NEAR(peak.x, layout.x_of_key(k0), 1.0);
    EXPECT_NEAR(peak.y, layout.y_of_query(q0), 1.0);
    const double cell = (layout.map.w / cols) * (layout.map.h / rows);
    EXPECT_NEAR(static_cast<double>(peak.n), cell, 2 * std::sqrt(cell) + 2);  // one cell's area
    // the map fills its box: its corners are background cells (dark: low weights)
    EXPECT_LT(r.at(static_cast<int>(layout.map.x) + 1, static_cast<int>(layout.map.y) + 1).g, 60);
    EXPECT_LT(r.at(static_cast<int>(layout.map.right()) - 2, static_cast<int>(layout.map.bottom()) - 2).g, 60);
  }
}

TEST(ExamplePlotPng, ColorBarRunsFromTheColormapBottomToItsTop) {
  REQUIRE_FONT();
  HeatmapLayout layout;
  HeatmapSpec spec = heatmap_spec(16, 16, 3, 3);
  spec.hi = 0.5;  // the peak (1.0) is clamped to the top color
  const Raster r = rasterize(attention_heatmap(spec, &layout));
  const int x = static_cast<int>(layout.colorbar.x + layout.colorbar.w / 2);
  EXPECT_EQ(r.at(x, static_cast<int>(layout.colorbar.y) + 1), viridis(1));
  EXPECT_EQ(r.at(x, static_cast<int>(layout.colorbar.bottom()) - 2), viridis(0));
  for (const double v : {0.1, 0.25, 0.5, 0.75, 0.9}) {  // in between: the colormap, bottom to top
    const Color got = r.at(x, static_cast<int>(layout.colorbar.bottom() - v * layout.colorbar.h));
    const Color expected = viridis(v);
    EXPECT_NEAR(got.r, expected.r, 6) << v;
    EXPECT_NEAR(got.g, expected.g, 6) << v;
    EXPECT_NEAR(got.b, expected.b, 6) << v;
  }
  EXPECT_DOUBLE_EQ(layout.hi, 0.5);
  EXPECT_DOUBLE_EQ(layout.lo, 0.0);
  // the frame of the map is drawn around, not over, the cells
  EXPECT_EQ(r.at(static_cast<int>(layout.map.x) - 1, static_cast<int>(layout.map.y) + 5), kAxis);
}

TEST(ExamplePlotPng, SeriesIsDrawnAboveTheMapOnTheSameSteps) {
  REQUIRE_FONT();
  for (const double per_cell : {1.0, 2.0}) {
    const int cols = 24, steps = static_cast<int>(cols * per_cell);
    HeatmapSpec spec = heatmap_spec(cols, cols, 0, 0);
    spec.steps_per_cell = per_cell;
    std::vector<double> ramp;
    for (int t = 0; t < steps; ++t) ramp.push_back(t);  // rises: its line climbs left to right
    spec.series = {ramp};
    HeatmapLayout layout;
    const Raster r = rasterize(attention_heatmap(spec, &layout));
    ASSERT_GT(layout.series.w, 0);
    const Color line = series_color(0);
    double min_x = 1e9, max_x = -1, y_at_min = 0, y_at_max = 0;
    long n = 0;
    for (int y = 0; y < r.height; ++y)
      for (int x = 0; x < r.width; ++x)
        if (r.at(x, y) == line) {
          ++n;
          EXPECT_LT(y, layout.map.y) << "series pixel at " << x << "," << y << " is not above the map";
          if (x < min_x) min_x = x, y_at_min = y;
          if (x > max_x) max_x = x, y_at_max = y;
        }
    ASSERT_GT(n, steps);
    // input step 0 and the last one at the centers of the key cells they fall in (steps_per_cell per cell)
    EXPECT_NEAR(min_x + 0.5, layout.x_of_key((0.5 / per_cell) - 0.5), 2.0) << per_cell;
    EXPECT_NEAR(max_x + 0.5, layout.x_of_key((steps - 0.5) / per_cell - 0.5), 2.0) << per_cell;
    EXPECT_GE(min_x, layout.map.x);
    EXPECT_LT(max_x, layout.map.right());
    EXPECT_GT(y_at_min, y_at_max + layout.series.h / 2);  // rises across most of the panel
  }
}

TEST(ExamplePlotPng, HeadPanelsEachShowTheirOwnPeak) {
  REQUIRE_FONT();
  HeadsSpec spec;
  spec.title = "heads";
  const int keys[] = {2, 9, 14};
  for (int k : keys) spec.heads.push_back(peak_map(16, 16, 15 - k, k));
  HeadsLayout layout;
  const Figure fig = attention_heads(spec, &layout);
  const Raster r = rasterize(fig);
  ASSERT_EQ(layout.panels.size(), 3u);
  for (size_t h = 0; h < 3; ++h) {
    const Box& b = layout.panels[h];
    if (h > 0) {
      EXPECT_GT(b.x, layout.panels[h - 1].right() + 20);  // side by side, apart
    }
    const Centroid peak = pixels_of(r, viridis(1), static_cast<int>(b.x), static_cast<int>(b.y),
                                    static_cast<int>(b.right()), static_cast<int>(b.bottom()));
    ASSERT_GT(peak.n, 0) << "head " << h;
    EXPECT_EQ(static_cast<int>((peak.x - b.x) * 16 / b.w), keys[h]) << "head " << h;
    EXPECT_EQ(static_cast<int>((peak.y - b.y) * 16 / b.h), 15 - keys[h]) << "head " << h;
  }
  const std::string svg = to_svg(fig);
  for (const char* label : {">head 0<", ">head 1<", ">head 2<", ">key step<", ">query step<", ">attention weight<"})
    EXPECT_NE(svg.find(label), std::string::npos) << label;
}

// Mean row of the pixels of color c in each column of box: (x, mean y) for the columns that have some.
std::vector<std::pair<int, double>> column_means(const Raster& r, const Box& box, Color c) {
  std::vector<std::pair<int, double>> out;
  for (int x = static_cast<int>(box.x) + 1; x < static_cast<int>(box.right()) - 1; ++x) {
    double sum = 0;
    int n = 0;
    for (int y = static_cast<int>(box.y) + 1; y < static_cast<int>(box.bottom()) - 1; ++y)
      if (r.at(x, y) == c) sum += y, ++n;
    if (n > 0) out.emplace_back(x, sum / n);
  }
  return out;
}

TEST(ExamplePlotPng, FallingLossIsALineGoingDownLeftToRight) {
  REQUIRE_FONT();
  CurvesSpec spec;
  spec.title = "Training curves";
  Curve training{"training", {}, {}}, test{"test", {}, {}};
  for (int e = 1; e <= 12; ++e) {
    training.loss.push_back(2.0 / e);
    training.accuracy.push_back(0.4 + 0.05 * e);
    test.loss.push_back(2.2 / e + 0.1);
    test.accuracy.push_back(0.3 + 0.05 * e);
  }
  spec.curves = {training, test};
  CurvesLayout layout;
  const Figure fig = training_curves(spec, &layout);
  const Raster r = rasterize(fig);
  for (const auto& [box, x, color, falls] : std::vector<std::tuple<Box, Scale, Color, bool>>{
           {layout.loss, layout.epoch_x_loss, series_color(0), true},
           {layout.loss, layout.epoch_x_loss, series_color(1), true},
           {layout.accuracy, layout.epoch_x_accuracy, series_color(0), false},
           {layout.accuracy, layout.epoch_x_accuracy, series_color(1), false}}) {
    const auto means = column_means(r, box, color);
    ASSERT_GT(means.size(), static_cast<size_t>(box.w / 2));
    for (size_t i = 1; i < means.size(); ++i) {
      if (falls) {  // pixel rows grow downward: a falling value has a growing row
        EXPECT_GE(means[i].second, means[i - 1].second - 1.5) << "x " << means[i].first;
      } else {
        EXPECT_LE(means[i].second, means[i - 1].second + 1.5) << "x " << means[i].first;
      }
    }
    EXPECT_NEAR(means.front().first, x(1), 4);  // from epoch 1 ...
    EXPECT_NEAR(means.back().first, x(12), 4);  // ... to 12
    EXPECT_GT(falls ? means.back().second - means.front().second : means.front().second - means.back().second,
              box.h / 4);  // and by a good part of the panel
  }
  // the first loss (2.0) at its place on the y axis
  const auto first = column_means(r, layout.loss, series_color(0)).front();
  EXPECT_NEAR(first.second, layout.loss_y(2.0), 4);
  const std::string svg = to_svg(fig);
  for (const char* label : {">loss<", ">accuracy<", ">epoch<", ">training<", ">test<", ">Training curves<"})
    EXPECT_NE(svg.find(label), std::string::npos) << label;
}

TEST(ExamplePlotFont, OverrideComesFirstAndMissingFilesAreNamed) {
  setenv("SEQATTN_PLOT_FONT", "/nonexistent/font.ttf", 1);
  EXPECT_EQ(font_search_paths().front(), "/nonexistent/font.ttf");
  unsetenv("SEQATTN_PLOT_FONT");
  EXPECT_EQ(font_search_paths().front(), "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf");
  try {
    Font font("/nonexistent/font.ttf");
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/font.ttf"), std::string::npos) << e.what();
  }
}

}  // namespace
