// What one wake-up costs on this machine: two processes pass a byte back and forth over two
// pipes, so every round trip is two wake-ups (each side sleeps in read until the other writes).
// Prints wall time and the CPU time of both processes per round trip. Run it as is (the
// scheduler usually puts the two on different CPUs) and under `taskset -c 0` (same CPU) to see
// the cost of a cross-CPU wake-up against a local one.
//
// Usage: capd_wakeup_cost [ROUND_TRIPS]   (default 100000)

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace {

double Seconds(const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; }

}  // namespace

int main(int argc, char** argv) {
  const long round_trips = argc > 1 ? std::atol(argv[1]) : 100000;
  int to_child[2];
  int to_parent[2];
  if (round_trips <= 0 || pipe(to_child) != 0 || pipe(to_parent) != 0) return 2;
  char byte = 0;
  const pid_t child = fork();
  if (child < 0) return 1;
  if (child == 0) {
    for (long i = 0; i < round_trips; ++i) {
      if (read(to_child[0], &byte, 1) != 1 || write(to_parent[1], &byte, 1) != 1) _exit(1);
    }
    _exit(0);
  }
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < round_trips; ++i) {
    if (write(to_child[1], &byte, 1) != 1 || read(to_parent[0], &byte, 1) != 1) return 1;
  }
  const std::chrono::duration<double> wall = std::chrono::steady_clock::now() - start;
  int status = 0;
  waitpid(child, &status, 0);
  rusage self{};
  rusage children{};
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &children);
  const double cpu = Seconds(self.ru_utime) + Seconds(self.ru_stime) + Seconds(children.ru_utime) +
                     Seconds(children.ru_stime);
  std::printf("per round trip (2 wake-ups): %.2f us wall, %.2f us CPU\n",
              wall.count() / round_trips * 1e6, cpu / round_trips * 1e6);
  return 0;
}
