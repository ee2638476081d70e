// Empty: the target that precompiles LibTorch's headers once for the others (RESNET_PCH in
// CMakeLists.txt) needs one source file.
