"""Energy and carbon of a run, from the hardware's own energy counters, never invented.

- `counters`: one cumulative counter per device the job uses, read in joules: NVIDIA GPUs through NVML's total-energy
  counter (nvidia-ml-py), AMD GPUs through amdsmi's energy accumulator, CPU packages and DRAM through RAPL
  (/sys/class/powercap). A counter that cannot be read is reported missing with the reason; a TDP-based estimate is
  built only when asked for and is labelled an estimate.
- `accounting`: per-rank windows (training, validation), the sum over ranks and nodes (CPU counted once per node),
  the partial sum carried across requeues, and the report: kWh, mean power, J/sample, J/token, gCO2e.
- `callback` (imports Lightning; not imported here so that `normia.bench` stays light): the per-run measurement.

Why the counters directly rather than zeus or codecarbon: the issue's rules are "only this job's GPUs", "CPU once per
node, not once per rank" and "no silent estimate". codecarbon measures every GPU of the host and, per its own docs,
falls back to a TDP estimate when RAPL is unreadable; with several ranks per node each rank measures the whole node.
zeus (ZeusMonitor) reads the very same NVML/amdsmi/RAPL counters and would meet the rules with care, but it adds a
dependency tree for ~100 lines of reading, and its CPU windows are per process. Reading the counters here keeps the
once-per-node rule and the labels in one place; nvidia-ml-py is in the `bench` extra, amdsmi ships with ROCm.
"""
