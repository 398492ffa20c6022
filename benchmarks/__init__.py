"""Side-by-side benchmarks of cnnvis against its peers: `python -m benchmarks.run`."""
