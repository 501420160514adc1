"""The scheduler layer: experiments, jobs, dependencies, tokens."""
