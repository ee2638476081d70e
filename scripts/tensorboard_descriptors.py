"""Writes TensorBoard's Event message and everything it uses as a FileDescriptorSet (protobuf),
for protoc's --descriptor_set_in: the build compiles these into the event-file writer
(src/io/event_proto.cpp). The definitions come from the tensorboard package on PyPI, whose
compiled modules carry them; nothing of TensorBoard's is kept in this repository.
Usage: tensorboard_descriptors.py OUT.pb   (prints the .proto names protoc then generates)"""
import sys

from google.protobuf import descriptor_pb2
from tensorboard.compat.proto import event_pb2

files = descriptor_pb2.FileDescriptorSet()
seen = set()


def add(descriptor):
    if descriptor.name in seen:
        return
    for dependency in descriptor.dependencies:
        add(dependency)
    seen.add(descriptor.name)
    proto = descriptor_pb2.FileDescriptorProto()
    descriptor.CopyToProto(proto)
    files.file.append(proto)


add(event_pb2.DESCRIPTOR)
with open(sys.argv[1], 'wb') as out:
    out.write(files.SerializeToString())
print(';'.join(f.name for f in files.file))
