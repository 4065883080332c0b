// The MPI (and NCCL) communicators behind uvit::world(), built when CMake finds MPI
// (UVIT_HAVE_MPI) and NCCL (UVIT_HAVE_NCCL).
#pragma once
#include <memory>
#include <string>

#include "uvit/dist.hpp"

namespace uvit {

#ifdef UVIT_HAVE_MPI
// MPI_Init_thread(SERIALIZED) and MPI_COMM_WORLD; an NCCL communicator on top for device "cuda"
// when built with NCCL.
std::unique_ptr<Comm> make_mpi_comm(const std::string& device);
void mpi_abort(int code);
#endif
#ifdef UVIT_HAVE_NCCL
std::unique_ptr<Comm> make_nccl_comm();
#endif

}  // namespace uvit
