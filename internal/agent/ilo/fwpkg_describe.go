package ilo

// SmartComponentInfo is what a .fwpkg's payload.json says about it, as the agent reads it: the
// baseline importer describes packages with the same reader the agent installs them with, so
// that a baseline never claims what the agent would read otherwise.
type SmartComponentInfo struct {
	// Name and Version are the package's, from payload.json.
	Name    string
	Version string
	// UpdatableBy lists who can install it (Bmc, Uefi, RuntimeAgent).
	UpdatableBy []string
	// Devices are the devices it updates.
	Devices []SmartComponentDevice
	// ThroughILO is false when only an agent in the server's operating system (SUM, SUT) can
	// install it (ilorest's type D); the agent refuses it on an iLO target.
	ThroughILO bool
}

// SmartComponentDevice is one Devices.Device[] entry of payload.json.
type SmartComponentDevice struct {
	Name    string
	Target  string // the GUID the iLO's FirmwareInventory members list in Oem.Hpe.Targets
	Version string
}

// DescribeSmartComponent reads the .fwpkg at localPath as the agent does before installing it.
func DescribeSmartComponent(localPath string) (SmartComponentInfo, error) {
	pkg, err := openSmartPackage(localPath, "")
	if err != nil {
		return SmartComponentInfo{}, err
	}
	route, err := pkg.route()
	if err != nil {
		return SmartComponentInfo{}, err
	}
	info := SmartComponentInfo{
		Name:        pkg.payload.Name,
		Version:     pkg.payload.Version,
		UpdatableBy: pkg.payload.UpdatableBy,
		ThroughILO:  route != routeHostOS,
	}
	for _, d := range pkg.payload.Devices.Device {
		info.Devices = append(info.Devices, SmartComponentDevice{Name: d.DeviceName, Target: d.Target, Version: d.Version})
	}
	return info, nil
}
