"""The room's set and setting: scenes, lights over MQTT, music on libvlc, the MQTT bridge."""
