"""The coexistence feed: after a go-live, the core's changes to patients it shares with legacy
systems that still serve them go back to those systems as HL7 v2 (ADT A31/A08) over MLLP.

``serving`` (which systems still serve a patient), ``hl7v2`` (the messages), ``mllp``
(delivery and ACKs), ``feed`` (change detection, the outbound queue, retries, the stop).
"""
