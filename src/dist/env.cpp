#include "dist/env.h"

#include <cstdlib>
#include <string>

#include "core/env.h"
#include "core/error.h"

namespace resnet {
namespace {

int parse_int(const char* name, const char* value, int least) {
  return whole_number_from_env(name, value, least, 1 << 20, "a whole number, at least " + std::to_string(least));
}

}  // namespace

DistEnv dist_env_from_environment(const std::function<const char*(const char*)>& getenv_fn) {
  auto get = [&](const char* name) -> const char* {
    const char* v = getenv_fn ? getenv_fn(name) : std::getenv(name);
    return v != nullptr && *v != '\0' ? v : nullptr;
  };
  struct Names {
    const char *rank, *size, *local, *launcher;
  };
  const Names kinds[] = {{"RANK", "WORLD_SIZE", "LOCAL_RANK", "torchrun"},
                         {"SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "Slurm"},
                         {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI"},
                         {"PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI"}};
  DistEnv env;
  for (const Names& k : kinds) {
    if (get(k.size) == nullptr) continue;
    env.world_size = parse_int(k.size, get(k.size), 1);
    if (get(k.rank) == nullptr)
      throw UsageError(std::string("environment variable ") + k.size + " is set but " + k.rank + " is not");
    env.rank = parse_int(k.rank, get(k.rank), 0);
    if (env.rank >= env.world_size)
      throw UsageError(std::string("environment variable ") + k.rank + " = " + std::to_string(env.rank) +
                       " is not below " + k.size + " = " + std::to_string(env.world_size));
    env.local_rank = get(k.local) ? parse_int(k.local, get(k.local), 0) : 0;
    env.launcher = k.launcher;
    break;
  }
  if (!env.distributed()) return env;
  const char* addr = get("MASTER_ADDR");
  const char* port = get("MASTER_PORT");
  if (addr == nullptr || port == nullptr)
    throw UsageError("a job of " + std::to_string(env.world_size) + " processes (" + env.launcher +
                     ") needs MASTER_ADDR and MASTER_PORT: the host and a free port of rank 0's machine, "
                     "where the processes meet");
  const char* agent = get("TORCHELASTIC_USE_AGENT_STORE");
  env.agent_store = agent != nullptr && std::string(agent) == "True";
  env.master_addr = addr;
  env.master_port = parse_int("MASTER_PORT", port, 1);
  if (env.master_port > 65535) throw UsageError("environment variable MASTER_PORT must be a port, 1 to 65535 (got '" + std::string(port) + "')");
  return env;
}

}  // namespace resnet
