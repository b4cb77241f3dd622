"""The floor everything stands on: errors, registries, hashing, validation, devices and seeds
(runtime), torchrun (distributed), progress, locks, atomic files, safe pickle loads, statistics.
Imports nothing else of energybench."""
