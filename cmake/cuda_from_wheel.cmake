# The CUDA compiler for machines without the CUDA toolkit: PyPI's nvidia-cuda-nvcc and friends
# (installed by scripts/install-deps as `cuda-toolkit[nvcc,...]`, the meta-package the torch wheel
# already depends on) put nvcc, cicc, the headers and the libraries in site-packages/nvidia/cuNN.
# That folder is a toolkit but for two things CMake and nvcc expect: unversioned library names
# (libcudart.so) and lib64/. Configure builds a view of it in the build folder, made of symbolic
# links, and points LibTorch's CMake files (FindCUDA, FindCUDAToolkit, enable_language(CUDA)) at it.
#
# Used only when no nvcc is found otherwise (CMAKE_CUDA_COMPILER, $CUDACXX, $CUDA_HOME,
# $CUDA_PATH, PATH, /usr/local/cuda); sets RESNET_CUDA_FROM_WHEEL.
set(RESNET_CUDA_FROM_WHEEL OFF)
set(_view "${CMAKE_BINARY_DIR}/cuda-toolkit")
if(CMAKE_CUDA_COMPILER STREQUAL "${_view}/bin/nvcc")
  unset(CMAKE_CUDA_COMPILER CACHE)  # made here before: make it again (the wheel may have moved)
  unset(CUDA_TOOLKIT_ROOT_DIR CACHE)
endif()
if(CMAKE_CUDA_COMPILER OR DEFINED ENV{CUDACXX} OR CUDA_TOOLKIT_ROOT_DIR OR NOT RESNET_PYTHON)
  return()
endif()
find_program(RESNET_TOOLKIT_NVCC nvcc HINTS ENV CUDA_HOME ENV CUDA_PATH PATH_SUFFIXES bin
             PATHS /usr/local/cuda/bin)
if(RESNET_TOOLKIT_NVCC)
  return()
endif()
unset(RESNET_TOOLKIT_NVCC CACHE)  # look again next time: a toolkit may be installed later

# nvidia/cu<major of the wheel's CUDA> with bin/nvcc in it, if the wheel is a CUDA build.
execute_process(
  COMMAND "${RESNET_PYTHON}" -c [=[
import os, importlib.util
spec = importlib.util.find_spec("torch")
cuda = None
if spec:
    import torch
    cuda = torch.version.cuda
if cuda:
    import nvidia
    for p in nvidia.__path__:
        d = os.path.join(p, "cu" + cuda.split(".")[0])
        if os.access(os.path.join(d, "bin", "nvcc"), os.X_OK):
            print(d)
            break
    else:
        print("none")
]=]
  OUTPUT_VARIABLE _wheel_cuda OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(_wheel_cuda STREQUAL "none")
  message(WARNING "LibTorch is a CUDA build, and neither the CUDA toolkit nor PyPI's nvcc is "
                  "installed: scripts/install-deps installs the latter.")
endif()
if(NOT _wheel_cuda OR _wheel_cuda STREQUAL "none")
  return()
endif()

file(REMOVE_RECURSE "${_view}")
file(MAKE_DIRECTORY "${_view}/bin" "${_view}/lib")
# nvcc finds its parts relative to the path it was started by ($(_HERE_)/..), so bin/ holds a link
# per file (a linked folder would lead `..` back into site-packages, which has no lib64/).
file(GLOB _bin RELATIVE "${_wheel_cuda}/bin" "${_wheel_cuda}/bin/*")
foreach(f IN LISTS _bin)
  file(CREATE_LINK "${_wheel_cuda}/bin/${f}" "${_view}/bin/${f}" SYMBOLIC)
endforeach()
foreach(d include nvvm)
  file(CREATE_LINK "${_wheel_cuda}/${d}" "${_view}/${d}" SYMBOLIC)
endforeach()
file(GLOB _libs RELATIVE "${_wheel_cuda}/lib" "${_wheel_cuda}/lib/*")
foreach(f IN LISTS _libs)
  file(CREATE_LINK "${_wheel_cuda}/lib/${f}" "${_view}/lib/${f}" SYMBOLIC)
  string(REGEX REPLACE "\\.so\\.[0-9.]+$" ".so" _unversioned "${f}")  # libcudart.so.13 -> libcudart.so
  if(NOT _unversioned STREQUAL f AND NOT EXISTS "${_view}/lib/${_unversioned}")
    file(CREATE_LINK "${_wheel_cuda}/lib/${f}" "${_view}/lib/${_unversioned}" SYMBOLIC)
  endif()
endforeach()
file(CREATE_LINK lib "${_view}/lib64" SYMBOLIC)

set(CUDA_TOOLKIT_ROOT_DIR "${_view}" CACHE PATH "CUDA toolkit (a view of the PyPI wheels)" FORCE)
set(CUDAToolkit_ROOT "${_view}")
set(CMAKE_CUDA_COMPILER "${_view}/bin/nvcc" CACHE FILEPATH "nvcc (PyPI's nvidia-cuda-nvcc)" FORCE)
set(RESNET_CUDA_FROM_WHEEL ON)
message(STATUS "No CUDA toolkit found; using nvcc from PyPI's wheels in ${_wheel_cuda}")
