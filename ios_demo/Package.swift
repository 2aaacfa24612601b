// swift-tools-version:5.9
// The app's code as a package (StyleDemoKit); App/ holds the @main entry and project.yml builds the iOS app.
import PackageDescription

let package = Package(
    name: "StyleDemo",
    platforms: [.iOS(.v16), .macOS(.v13)],
    products: [.library(name: "StyleDemoKit", targets: ["StyleDemoKit"])],
    targets: [.target(name: "StyleDemoKit", path: "Sources/StyleDemoKit")]
)
