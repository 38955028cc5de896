"""The run itself: the pytest plugin (options, markers, fixtures, verdict rows) and the session that starts targets
and writes the evidence bundle. The top layer: it may import everything.
"""
