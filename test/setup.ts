// Loaded by .mocharc before every test: the suite runs many agents as root in the host's
// namespace, which must not each try to create a mesh0 there. A test that wants the
// interface sets MESH_OVERLAY__INTERFACE=true for its agents (test/system/overlay-netns.test.ts).
process.env.MESH_OVERLAY__INTERFACE ??= 'false'
