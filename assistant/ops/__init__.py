"""Operations: the doctor, the vLLM launcher, the engine manager, systemd units, status and backups."""
