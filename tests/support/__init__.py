"""What the tests run against besides the code under test: doubles of outside services, a tiny model, and the
helpers that start the service as a real process.

The benchmarks (bench/) import from here too, so the double of an outside service and the way a child
process is given a port exist once. Nothing here imports from tests' own modules or from bench/.
"""
