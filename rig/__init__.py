"""The capture layer: the dual Basler rig, exposure-scheduled synchronized recording, crash-safe sessions.

``device`` (the seam to a camera SDK) and ``pylon_device`` (pypylon), ``cameras`` (a camera and the rig),
``camera_state`` (user set, pixel features), ``bandwidth`` (link budget), ``config`` (rig config), ``schedule``
(plan and checks around the core's ladder), ``sync`` (trigger topologies), ``synccheck`` (proving the wire),
``stream`` and ``recorder`` (pairing, drops, statistics), ``writer`` (HDF5 session thread), ``capture`` (a
session), ``metering`` (bright references), ``preview`` (the web page), ``display``, ``darkstats``,
``diskspace``, ``usbfs``, ``emulate``, ``cli`` (``exlpose-capture``). Builds on ``exlpose_data`` only.
"""
