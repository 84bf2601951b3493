// Output of the time-series classifier example: the progress bar (plain lines when not on a terminal, an
// in-place bar on one), the confusion matrix table, and the heatmap PNG/CSV writers.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "time_series_classifier/progress.hpp"
#include "time_series_classifier/train.hpp"
#if __has_include(<stb/stb_image_write.h>) || __has_include(<stb_image_write.h>)
#include "time_series_classifier/heatmap.hpp"
#define TSC_TEST_HEATMAP 1
#endif

using namespace tsc;

TEST(ExampleProgress, PlainModeWritesWholeLinesWithoutControlCharacters) {
  double now = 100.0;
  std::ostringstream out;
  ProgressBar bar(out, false, [&] { return now; }, 2.5);
  bar.start("epoch 1/2", 4);
  now = 101;
  bar.update(1, 30, 0.9, 0.5);  // 1 s since start: no line
  now = 103;
  bar.update(2, 60, 0.5, 0.75);  // 3 s >= 2.5 s: a progress line
  now = 104;
  bar.update(3, 90, 0.4, 0.8);  // 1 s since the last line: none
  now = 106;
  bar.update(4, 120, 0.3, 0.85);  // done: the final line comes from finish()
  bar.finish();
  EXPECT_EQ(out.str(),
            "epoch 1/2  2/4 steps  loss 0.5000  acc 0.750  20 seq/s  0:03 left\n"
            "epoch 1/2  4/4 steps  loss 0.3000  acc 0.850  20 seq/s  0:06 total\n");
  EXPECT_EQ(out.str().find('\r'), std::string::npos);
  EXPECT_EQ(out.str().find('\x1b'), std::string::npos);
}

TEST(ExampleProgress, PlainModeWithoutIntervalWritesOneLinePerEpoch) {
  double now = 0;
  std::ostringstream out;
  ProgressBar bar(out, false, [&] { return now; }, 0.0);
  for (int epoch = 1; epoch <= 2; ++epoch) {
    bar.start("epoch " + std::to_string(epoch) + "/2", 10);
    for (int s = 1; s <= 10; ++s) {
      now += 100;
      bar.update(s, 8 * s, 1.0 / s, 0.1 * s);
    }
    bar.finish();
  }
  EXPECT_EQ(out.str(),
            "epoch 1/2  10/10 steps  loss 0.1000  acc 1.000  0 seq/s  16:40 total\n"
            "epoch 2/2  10/10 steps  loss 0.1000  acc 1.000  0 seq/s  16:40 total\n");
}

TEST(ExampleProgress, TerminalModeRedrawsOneLineInPlace) {
  double now = 0;
  std::ostringstream out;
  ProgressBar bar(out, true, [&] { return now; }, 30.0, 10);
  bar.start("epoch 1/1", 4);
  now = 1;
  bar.update(1, 10, 0.7, 0.5);
  now = 1.05;
  bar.update(2, 20, 0.6, 0.5);  // within 0.1 s of the last draw: skipped
  now = 2;
  bar.update(3, 30, 0.5, 0.6);
  bar.finish();
  EXPECT_EQ(out.str(),
            "\repoch 1/1 [==>       ] 1/4  loss 0.7000  acc 0.500  10 seq/s  ETA 0:03\x1b[K"
            "\repoch 1/1 [=======>  ] 3/4  loss 0.5000  acc 0.600  15 seq/s  ETA 0:01\x1b[K"
            "\repoch 1/1 [=======>  ] 3/4  loss 0.5000  acc 0.600  15 seq/s  ETA 0:01\x1b[K\n");
}

TEST(ExampleProgress, FormatsDurations) {
  EXPECT_EQ(format_duration(0), "0:00");
  EXPECT_EQ(format_duration(75.4), "1:15");
  EXPECT_EQ(format_duration(3725), "1:02:05");
  EXPECT_EQ(format_duration(-1), "?");
}

TEST(ExampleReport, FormatsTheConfusionMatrix) {
  Evaluation e;
  e.confusion = {{12, 3}, {0, 105}};
  EXPECT_EQ(format_confusion(e, {"A", "Bee"}),
            "confusion matrix (rows: true class, columns: predicted class index)\n"
            "              0    1\n"
            "  0  A       12    3\n"
            "  1  Bee      0  105\n");
}

#ifdef TSC_TEST_HEATMAP
TEST(ExampleHeatmap, RendersCellsWithViridisAndStacksPanels) {
  seqattn::Matrix<float> m(2, 3);
  m << 0, 0.5f, 1, 0.25f, 0.75f, 1;
  const Image img = render_heatmap(m, 2, 0.0, 1.0);
  ASSERT_EQ(img.width, 6);
  ASSERT_EQ(img.height, 4);
  const std::uint8_t* lo = img.pixel(1, 1);  // cell (0, 0): value 0
  EXPECT_EQ(std::vector<int>(lo, lo + 3), (std::vector<int>{68, 1, 84}));
  const std::uint8_t* hi = img.pixel(5, 3);  // cell (1, 2): value 1
  EXPECT_EQ(std::vector<int>(hi, hi + 3), (std::vector<int>{253, 231, 37}));
  const Image both = stack({img, render_heatmap(seqattn::Matrix<float>::Zero(1, 2), 2, 0.0, 1.0)}, 3);
  EXPECT_EQ(both.width, 6);
  EXPECT_EQ(both.height, 4 + 3 + 2);
  EXPECT_EQ(both.pixel(0, 5)[0], 255);  // gap is white
}

TEST(ExampleHeatmap, WritesPngAndCsvFiles) {
  const std::string png = ::testing::TempDir() + "tsc_heatmap_test.png", csv = ::testing::TempDir() + "tsc_heatmap.csv";
  write_png(png, render_heatmap(seqattn::Matrix<float>::Identity(3, 3), 4, 0.0, 1.0));
  std::ifstream in(png, std::ios::binary);
  std::string sig(8, '\0');
  in.read(&sig[0], 8);
  EXPECT_EQ(sig, "\x89PNG\r\n\x1a\n");
  write_csv(csv, "query,key,weight", {{0, 1, 0.5}, {1, 0, 0.25}});
  std::ifstream text(csv);
  std::stringstream all;
  all << text.rdbuf();
  EXPECT_EQ(all.str(), "query,key,weight\n0,1,0.5\n1,0,0.25\n");
  std::remove(png.c_str());
  std::remove(csv.c_str());
  EXPECT_THROW(write_png("/nonexistent-dir/x.png", render_heatmap(seqattn::Matrix<float>::Identity(2, 2), 1, 0, 1)),
               std::runtime_error);
}
#endif
