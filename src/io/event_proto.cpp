#include "io/event_proto.h"

#include "tensorboard/compat/proto/event.pb.h"
#include "tensorboard/compat/proto/summary.pb.h"

namespace resnet {
namespace {

tensorboard::Event event(double wall_time, int64_t step) {
  tensorboard::Event e;
  e.set_wall_time(wall_time);
  e.set_step(step);
  return e;
}

}  // namespace

bool tensorboard_supported() { return true; }

std::string event_file_version(double wall_time) {
  tensorboard::Event e = event(wall_time, 0);
  e.set_file_version("brain.Event:2");
  return e.SerializeAsString();
}

std::string event_scalar(double wall_time, int64_t step, const std::string& tag, float value) {
  tensorboard::Event e = event(wall_time, step);
  tensorboard::Summary::Value* v = e.mutable_summary()->add_value();
  v->set_tag(tag);
  v->set_simple_value(value);
  return e.SerializeAsString();
}

std::string event_text(double wall_time, int64_t step, const std::string& tag, const std::string& text) {
  tensorboard::Event e = event(wall_time, step);
  tensorboard::Summary::Value* v = e.mutable_summary()->add_value();
  v->set_tag(tag);
  v->mutable_metadata()->mutable_plugin_data()->set_plugin_name("text");
  tensorboard::TensorProto* t = v->mutable_tensor();
  t->set_dtype(tensorboard::DT_STRING);
  t->mutable_tensor_shape();  // a scalar
  t->add_string_val(text);
  return e.SerializeAsString();
}

std::string event_session_start(double wall_time, int64_t step) {
  tensorboard::Event e = event(wall_time, step);
  e.mutable_session_log()->set_status(tensorboard::SessionLog::START);
  return e.SerializeAsString();
}

}  // namespace resnet
