"""Data hwpareto ships and produced itself (installed as ``hwpareto.data``; read through
:func:`hwpareto.resources.data_path`): device presets, simulator LUTs, the demo SuperNets with their accuracy tables,
and space files. Each folder's README gives the command that regenerates it."""
