# Dependencies as IMPORTED targets, one status line each (style rule 3).
find_package(PkgConfig REQUIRED)

# HDF5 (serial C library): datasets, checkpoints, attack outputs (formats.md).
pkg_check_modules(AL_HDF5 REQUIRED IMPORTED_TARGET hdf5-serial)
add_library(al::hdf5 ALIAS PkgConfig::AL_HDF5)
message(STATUS "advlab: HDF5 ${AL_HDF5_VERSION} (hdf5-serial)")

# OpenBLAS: CPU SGEMM behind conv (im2col) and linear layers.
pkg_check_modules(AL_OPENBLAS REQUIRED IMPORTED_TARGET openblas)
add_library(al::openblas ALIAS PkgConfig::AL_OPENBLAS)
message(STATUS "advlab: OpenBLAS ${AL_OPENBLAS_VERSION}")

# inih: INI experiment configs.
pkg_check_modules(AL_INIH REQUIRED IMPORTED_TARGET inih)
add_library(al::inih ALIAS PkgConfig::AL_INIH)
message(STATUS "advlab: inih ${AL_INIH_VERSION}")

# zlib: gzip'd IDX files (Fashion-MNIST/MNIST converter).
find_package(ZLIB REQUIRED)
message(STATUS "advlab: zlib ${ZLIB_VERSION_STRING}")

# OpenMP: CPU op parallelism (static schedules: deterministic for a fixed thread count).
find_package(OpenMP REQUIRED COMPONENTS C)
message(STATUS "advlab: OpenMP ${OpenMP_C_VERSION}")

# CUDA: cuDNN, cuBLAS(Lt), NCCL. AUTO builds it when nvcc is found.
# ADVLAB_SIMCUDA=ON instead builds cuda/*.cu as C++ against tests/simcuda (the CUDA twins run
# on the CPU under an emulator of the programming model, so their tests execute without a GPU).
set(AL_HAVE_CUDA OFF)
set(AL_SIMCUDA OFF)
if(ADVLAB_SIMCUDA)
  if(ADVLAB_CUDA STREQUAL "ON")
    message(FATAL_ERROR "advlab: ADVLAB_SIMCUDA=ON and ADVLAB_CUDA=ON are two different builds")
  endif()
  find_package(Python3 REQUIRED COMPONENTS Interpreter)
  set(AL_HAVE_CUDA ON)
  set(AL_SIMCUDA ON)
  message(STATUS "advlab: CUDA backend emulated on the CPU (simcuda)")
elseif(NOT ADVLAB_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(AL_HAVE_CUDA ON)
  elseif(ADVLAB_CUDA STREQUAL "ON")
    message(FATAL_ERROR "advlab: ADVLAB_CUDA=ON but no CUDA compiler was found")
  endif()
endif()
if(AL_HAVE_CUDA AND NOT AL_SIMCUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 90)
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  message(STATUS "advlab: CUDA ${CUDAToolkit_VERSION} (archs ${CMAKE_CUDA_ARCHITECTURES})")
  find_path(AL_CUDNN_INCLUDE cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/include)
  find_library(AL_CUDNN_LIB cudnn HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/lib)
  if(NOT AL_CUDNN_INCLUDE OR NOT AL_CUDNN_LIB)
    message(FATAL_ERROR "advlab: cuDNN 9 not found (cudnn.h / libcudnn)")
  endif()
  add_library(al::cudnn UNKNOWN IMPORTED)
  set_target_properties(al::cudnn PROPERTIES IMPORTED_LOCATION ${AL_CUDNN_LIB}
    INTERFACE_INCLUDE_DIRECTORIES ${AL_CUDNN_INCLUDE})
  message(STATUS "advlab: cuDNN ${AL_CUDNN_LIB}")
  find_path(AL_NCCL_INCLUDE nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/include)
  find_library(AL_NCCL_LIB nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/lib)
  if(AL_NCCL_INCLUDE AND AL_NCCL_LIB)
    add_library(al::nccl UNKNOWN IMPORTED)
    set_target_properties(al::nccl PROPERTIES IMPORTED_LOCATION ${AL_NCCL_LIB}
      INTERFACE_INCLUDE_DIRECTORIES ${AL_NCCL_INCLUDE})
    set(AL_HAVE_NCCL ON)
    message(STATUS "advlab: NCCL ${AL_NCCL_LIB}")
  else()
    message(STATUS "advlab: NCCL not found (multi-GPU off)")
  endif()
elseif(NOT AL_SIMCUDA)
  message(STATUS "advlab: CUDA backend off")
endif()

# OpenMPI (optional): CPU ranks and rank bootstrap.
set(AL_HAVE_MPI OFF)
find_package(MPI QUIET COMPONENTS C)
if(MPI_C_FOUND)
  set(AL_HAVE_MPI ON)
  message(STATUS "advlab: MPI ${MPI_C_VERSION}")
else()
  message(STATUS "advlab: MPI not found (single-process CPU runs)")
endif()
