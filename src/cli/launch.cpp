#include "cli/launch.h"

#include <arpa/inet.h>
#include <sched.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "core/error.h"

namespace resnet::cli {
namespace {

std::vector<std::string> g_command_line;
std::vector<pid_t> g_children;  // for the SIGTERM handler

// The launcher passes SIGTERM on to its processes; SIGINT (Ctrl-C) reaches them from the
// terminal already, so the launcher ignores it and waits for them to save and stop.
extern "C" void forward_sigterm(int sig) {
  for (pid_t c : g_children)
    if (c > 0) ::kill(c, sig);
}

// A port nothing listens on now (the kernel's choice for port 0); rank 0's store binds it next.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("--nproc-per-node: cannot open a socket to find a free port");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("--nproc-per-node: cannot find a free port on 127.0.0.1");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + std::to_string(WTERMSIG(status));
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

}  // namespace

void set_command_line(int argc, char** argv) { g_command_line.assign(argv, argv + argc); }
const std::vector<std::string>& command_line() { return g_command_line; }

std::vector<std::string> without_option(const std::vector<std::string>& args, const std::vector<std::string>& names) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    bool drop = false;
    for (const auto& name : names) {
      if (args[i] == name) {
        drop = true;
        ++i;  // and its value
        break;
      }
      if (args[i].rfind(name + "=", 0) == 0) {
        drop = true;
        break;
      }
    }
    if (!drop) out.push_back(args[i]);
  }
  return out;
}

int launch_local(int nproc, const std::vector<std::string>& args) {
  const std::string port = std::to_string(free_port());
  // Each process decodes streamed images on all the threads OpenMP gives it: the machine's cores
  // shared among the processes, where the user has not said (torchrun says 1). Through the
  // environment, as OpenMP's thread count is per thread and the loader's threads are new ones.
  const bool threads_given = std::getenv("OMP_NUM_THREADS") != nullptr;
  // (the cores this process may run on: a cpuset or taskset's, not all the machine's)
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  const int cores = ::sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus)
                                                                     : static_cast<int>(std::thread::hardware_concurrency());
  const std::string threads = std::to_string(std::max(1, std::max(1, cores) / nproc));
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::cout.flush();
  std::cerr.flush();
  std::vector<pid_t> children;
  for (int rank = 0; rank < nproc; ++rank) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      for (pid_t c : children) ::kill(c, SIGKILL);
      throw std::runtime_error("--nproc-per-node: cannot start process " + std::to_string(rank));
    }
    if (pid == 0) {
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", port.c_str(), 1);
      if (!threads_given) ::setenv("OMP_NUM_THREADS", threads.c_str(), 1);
      ::execv("/proc/self/exe", argv.data());
      std::cerr << "error: --nproc-per-node: cannot run " << args[0] << "\n";
      std::_Exit(127);
    }
    children.push_back(pid);
  }
  g_children = children;
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGTERM, forward_sigterm);
  int result = 0;
  size_t running = children.size();
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) break;
    --running;
    int rank = 0;
    for (size_t i = 0; i < children.size(); ++i)
      if (children[i] == pid) {
        rank = static_cast<int>(i);
        children[i] = 0;
      }
    const bool interrupted = WIFEXITED(status) && (WEXITSTATUS(status) == 130 || WEXITSTATUS(status) == 143);
    if (interrupted) {  // asked to stop: the others stop on their own; report the same status
      if (result == 0) result = WEXITSTATUS(status);
      continue;
    }
    const bool failed = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    if (!failed || result != 0) continue;
    result = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::cerr << "error: rank " << rank << " of " << nproc << " (pid " << pid << ") " << describe_status(status)
              << "; stopping the other processes\n";
    for (pid_t c : children)
      if (c > 0) ::kill(c, SIGTERM);
    // Those still running after 10 s are killed.
    std::thread([children] {
      std::this_thread::sleep_for(std::chrono::seconds(10));
      for (pid_t c : children)
        if (c > 0) ::kill(c, SIGKILL);
    }).detach();
  }
  return result;
}

}  // namespace resnet::cli
