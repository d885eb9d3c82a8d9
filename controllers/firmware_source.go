package controllers

import (
	"fmt"
	"strings"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// firmwareSourceRefusal says why the job's PortPolicy does not allow its firmware source, or
// "" when it does: spec.firmware, or every component of the baseline a baselineRef names.
func firmwareSourceRefusal(job *fwv1.UpdateJob, baseline *fwv1.FirmwareBaseline, policy *fwv1.PortPolicy) string {
	if fw := job.Spec.Firmware; fw != nil {
		return sourceRefusal("spec.firmware", fw, job.Namespace, policy)
	}
	if baseline == nil {
		return ""
	}
	for i := range baseline.Spec.Components {
		c := &baseline.Spec.Components[i]
		field := fmt.Sprintf("FirmwareBaseline %s component %s: spec.components[%d].firmware", baseline.Name, c.Name, i)
		if msg := sourceRefusal(field, &c.Firmware, job.Namespace, policy); msg != "" {
			return msg
		}
	}
	return ""
}

// sourceRefusal says why the PortPolicy does not allow one firmware source (named by field),
// or "" when it does. A nodePath or persistentVolumeClaim source is read by the agent with
// its own privileges (a node's root, a claim the job's author may not read), so only what an
// administrator listed in the cluster-scoped policy runs; url sources need no allow-list.
// The API server has already made both paths canonical (no '.', '..', '//', trailing '/'),
// so comparing strings is comparing paths.
func sourceRefusal(field string, fw *fwv1.FirmwareSource, namespace string, policy *fwv1.PortPolicy) string {
	allowed := policy.Spec.FirmwareSources
	switch {
	case fw.NodePath != "":
		for _, p := range allowed.NodePathPrefixes {
			if strings.HasPrefix(fw.NodePath, string(p)) {
				return ""
			}
		}
		return fmt.Sprintf("%s.nodePath %q is not under any of PortPolicy %q's spec.firmwareSources.nodePathPrefixes %s: "+
			"ask a cluster administrator to allow its directory there, or use a url source", field, fw.NodePath, policy.Name, quoteList(allowed.NodePathPrefixes))
	case fw.PersistentVolumeClaim != nil:
		for _, c := range allowed.PersistentVolumeClaims {
			if c.Namespace == namespace && (c.ClaimName == "" || c.ClaimName == fw.PersistentVolumeClaim.ClaimName) {
				return ""
			}
		}
		var list []string
		for _, c := range allowed.PersistentVolumeClaims {
			list = append(list, c.Namespace+"/"+map[bool]string{true: "*", false: c.ClaimName}[c.ClaimName == ""])
		}
		return fmt.Sprintf("%s.persistentVolumeClaim %s/%s is not among PortPolicy %q's spec.firmwareSources.persistentVolumeClaims %s: "+
			"ask a cluster administrator to allow the claim there, or use a url source", field, namespace, fw.PersistentVolumeClaim.ClaimName, policy.Name, quoteList(list))
	}
	return ""
}

// quoteList shows a list as ["a", "b"], and an empty one as [] (none allowed).
func quoteList[S ~string](items []S) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", string(s))
	}
	return "[" + strings.Join(q, ", ") + "]"
}
