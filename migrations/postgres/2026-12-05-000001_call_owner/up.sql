-- In a cluster, the node whose call router holds the call: when that node is lost, the
-- others close its open calls; a node starting closes only its own.
ALTER TABLE calls ADD COLUMN owner TEXT;
