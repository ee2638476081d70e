#include "train/metrics.h"

#include <cstdio>
#include <fstream>

#include "io/file.h"

namespace resnet {

void write_metrics_row(const std::string& csv, const EpochReport& e, double learning_rate) {
  std::string text = "epoch,train_loss,test_loss,top1,top5,img_per_s,seconds,learning_rate,elapsed_s\n";
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line))
    if (!line.empty() && std::stoll(line.substr(0, line.find(','))) < e.epoch) text += line + "\n";
  char test[96] = ",,";  // an epoch --eval-every did not test: its test columns empty
  if (e.tested) std::snprintf(test, sizeof test, "%.6f,%.4f,%.4f", e.test.loss, e.test.accuracy, e.test.top5);
  char row[256];
  std::snprintf(row, sizeof row, "%lld,%.6f,%s,%.1f,%.2f,%g,%.1f\n", static_cast<long long>(e.epoch), e.train_loss, test,
                e.img_per_s, e.seconds, learning_rate, e.elapsed);
  write_file_atomically(csv, text + row);
}

}  // namespace resnet
