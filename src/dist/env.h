// Where this process stands in a distributed job, from the variables that launchers set:
// torchrun (and our own `train --nproc-per-node`): RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
// MASTER_PORT; Slurm (srun): SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; Open MPI (mpirun):
// OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK; MPICH/Intel MPI:
// PMI_RANK, PMI_SIZE, MPI_LOCALRANKID. torchrun's names win where several are set. MASTER_ADDR
// and MASTER_PORT are needed under every launcher with more than one process (Slurm and MPI do
// not set them; the README says how).
#pragma once

#include <functional>
#include <string>

namespace resnet {

struct DistEnv {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr;  // the rendezvous (TCPStore) host, rank 0's machine
  int master_port = 0;
  std::string launcher;  // "torchrun", "Slurm", "MPI", or "" for a single process
  // torchrun's agent already serves the store at MASTER_ADDR:MASTER_PORT
  // (TORCHELASTIC_USE_AGENT_STORE=True): every process is its client, rank 0 too.
  bool agent_store = false;
  bool distributed() const { return world_size > 1; }
};

// The job from the environment (`getenv` by default). UsageError naming the variable for a value
// that is not a number, a rank outside [0, world size), or a job of several processes without
// MASTER_ADDR / MASTER_PORT.
DistEnv dist_env_from_environment(const std::function<const char*(const char*)>& getenv_fn = nullptr);

}  // namespace resnet
