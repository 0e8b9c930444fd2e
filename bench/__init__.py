"""The benches behind `lessonbot bench …`: each starts what it measures (servers in their own processes, the
platforms' stand-ins from standins/) on this machine and reports figures that compare within one run."""
