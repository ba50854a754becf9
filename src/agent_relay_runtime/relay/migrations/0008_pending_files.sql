-- The files still pending, by when they were declared: the relay's housekeeping looks for
-- those declared too long ago (abandoned uploads) every half minute, and the files table
-- only grows (deleted files keep their row). Partial: complete files are not in it.
CREATE INDEX files_pending_by_created ON files (created_at) WHERE status = 'pending';
