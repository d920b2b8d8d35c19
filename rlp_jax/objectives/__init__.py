"""Training objectives (RLP, RPT, NTP): rollout -> reward -> loss, behind one interface."""
