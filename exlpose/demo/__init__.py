"""``exlpose demo``: the whole pipeline end to end on the emulated rig, with a report."""
