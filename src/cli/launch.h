// `resnet train --nproc-per-node N`: starts N copies of this command line on this machine, as
// torchrun does (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1 and a free
// MASTER_PORT in each one's environment), and waits for them. When one fails (exits non-zero or
// is killed), the others are stopped (SIGTERM, then SIGKILL after 10 s) and its status is
// returned; 0 when all finish.
#pragma once

#include <string>
#include <vector>

namespace resnet::cli {

// The command line as main() got it, for the launcher to start again.
void set_command_line(int argc, char** argv);
const std::vector<std::string>& command_line();

// Runs `args` (args[0]: the program) N times with the variables above; returns the exit status.
int launch_local(int nproc, const std::vector<std::string>& args);

// `args` without `flag VALUE` / `flag=VALUE` (any of the flag's spellings).
std::vector<std::string> without_option(const std::vector<std::string>& args, const std::vector<std::string>& names);

}  // namespace resnet::cli
