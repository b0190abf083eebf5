"""The capture layer: the dual Basler rig, exposure-scheduled synchronized recording, crash-safe sessions.

``cameras`` (pypylon), ``config`` (rig config), ``schedule`` (plan and checks around the core's ladder),
``sync`` (trigger topologies), ``recorder`` (pairing, drops, statistics), ``writer`` (HDF5 session thread),
``capture`` (a session), ``display``, ``darkstats``, ``diskspace``, ``usbfs``, ``emulate``, ``cli``
(``exlpose-capture``). Builds on ``exlpose_data`` only.
"""
