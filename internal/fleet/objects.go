package fleet

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// Objects describes the fleet as Kubernetes objects in namespace, ready to create: the
// Secrets first (credentials, CA bundles, known_hosts), then one UpdateTarget per target,
// labelled fleet=<name>, type=<type> and component=<component>.
//
// iLOs are verified either by a CA bundle Secret holding the simulator's self-signed
// certificate or by a certificateSHA256 pin (every Options.PinEvery-th iLO), so that both
// ways are exercised; OAs and the Linux host by a known_hosts Secret. Nothing is insecure.
func (f *Fleet) Objects(namespace string) []client.Object {
	var secrets, targets []client.Object
	secret := func(name string, data map[string][]byte) string {
		secrets = append(secrets, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{LabelFleet: f.Name}},
			Type:       corev1.SecretTypeOpaque, Data: data,
		})
		return name
	}
	pw := map[string][]byte{fwv1.SecretKeyUsername: []byte(Username), fwv1.SecretKeyPassword: []byte(Password)}
	var iloCreds, oaCreds string
	iloIndex := 0
	for _, t := range f.targets {
		ut := &fwv1.UpdateTarget{
			ObjectMeta: metav1.ObjectMeta{Name: t.Name, Namespace: namespace, Labels: map[string]string{
				LabelFleet: f.Name, LabelType: string(t.Type), LabelComponent: string(ComponentOf(t.Type)),
			}},
			Spec: fwv1.UpdateTargetSpec{Type: t.Type, Address: t.Address},
		}
		switch {
		case t.ilo != nil:
			if iloCreds == "" {
				iloCreds = secret(f.Name+"-ilo-credentials", pw)
			}
			ut.Spec.CredentialsSecretRef = fwv1.SecretReference{Name: iloCreds}
			iloIndex++
			if f.opts.PinEvery > 0 && iloIndex%f.opts.PinEvery == 0 {
				ut.Spec.TLS = &fwv1.TLSSpec{CertificateSHA256: t.ilo.CertFingerprint()}
			} else {
				ca := secret(t.Name+"-ca", map[string][]byte{fwv1.SecretKeyCABundle: t.ilo.CertPEM()})
				ut.Spec.TLS = &fwv1.TLSSpec{CABundleSecretRef: &fwv1.SecretReference{Name: ca}}
			}
		case t.oa != nil:
			if oaCreds == "" {
				oaCreds = secret(f.Name+"-oa-credentials", pw)
			}
			ut.Spec.CredentialsSecretRef = fwv1.SecretReference{Name: oaCreds}
			kh := secret(t.Name+"-known-hosts", map[string][]byte{fwv1.SecretKeyKnownHosts: []byte(t.oa.KnownHostsLine() + "\n")})
			ut.Spec.SSH = &fwv1.SSHSpec{Port: ptr.To(int32(t.SSHPort)), KnownHostsSecretRef: &fwv1.SecretReference{Name: kh}}
		case t.linux != nil:
			creds := secret(t.Name+"-credentials", map[string][]byte{
				fwv1.SecretKeyUsername: []byte(t.linux.User), fwv1.SecretKeySSHPrivateKey: t.linux.UserKey,
			})
			ut.Spec.CredentialsSecretRef = fwv1.SecretReference{Name: creds}
			kh := secret(t.Name+"-known-hosts", map[string][]byte{fwv1.SecretKeyKnownHosts: t.linux.KnownHosts})
			ut.Spec.SSH = &fwv1.SSHSpec{Port: ptr.To(int32(t.SSHPort)), KnownHostsSecretRef: &fwv1.SecretReference{Name: kh}}
		}
		targets = append(targets, ut)
	}
	return append(secrets, targets...)
}

// Apply creates Objects(namespace) through c. The namespace must exist.
func (f *Fleet) Apply(ctx context.Context, c client.Client, namespace string) error {
	for _, o := range f.Objects(namespace) {
		if err := c.Create(ctx, o); err != nil {
			return fmt.Errorf("fleet: create %T %s/%s: %w", o, namespace, o.GetName(), err)
		}
	}
	return nil
}

// Job returns an UpdateJob (not created) that installs the fleet's image of component c on
// the fleet's targets of that component, with the given maxConcurrent and PortPolicy.
func (f *Fleet) Job(namespace, name string, c fwv1.Component, policy string, maxConcurrent int32) *fwv1.UpdateJob {
	im := f.images[c]
	return &fwv1.UpdateJob{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{LabelFleet: f.Name}},
		Spec: fwv1.UpdateJobSpec{
			Targets:        fwv1.TargetSelection{Selector: &metav1.LabelSelector{MatchLabels: f.Selector(c)}},
			Component:      c,
			Firmware:       &fwv1.FirmwareSource{URL: im.URL, SHA256: im.SHA256, Version: im.Version},
			PortPolicyName: policy,
			Rollout:        fwv1.Rollout{MaxConcurrent: maxConcurrent},
		},
	}
}
